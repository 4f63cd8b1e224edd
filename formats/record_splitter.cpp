#include "formats/record_splitter.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <iterator>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

namespace persoflow::formats {

Error RecordError::to_error() const {
  std::string where = "at byte " + std::to_string(offset);
  if (number > 0) where = "record " + std::to_string(number) + " " + where;
  return Error(ErrorCode::kParse, where + ": " + reason);
}

// What both splitters share: the stream offset, record numbering and the output queue.
class RecordSplitter::Impl {
 public:
  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  virtual ~Impl() = default;

  void feed(std::span<const std::uint8_t> chunk) {
    if (finished_) throw std::logic_error("RecordSplitter::feed after finish");
    if (chunk.empty()) return;
    scan(chunk);
    base_ += chunk.size();
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    at_end();
  }

  std::optional<SplitItem> next() {
    if (queue_.empty()) return std::nullopt;
    SplitItem item = std::move(queue_.front());
    queue_.pop_front();
    if (const auto* r = std::get_if<Record>(&item)) queued_bytes_ -= r->bytes.size();
    return item;
  }

  std::size_t buffered_bytes() const { return queued_bytes_ + partial_bytes(); }
  std::uint64_t bytes_fed() const { return base_; }
  bool finished() const { return finished_; }

 protected:
  // Scans one chunk; base_ is the stream offset of chunk[0] meanwhile.
  virtual void scan(std::span<const std::uint8_t> chunk) = 0;
  // The end of the stream.
  virtual void at_end() = 0;
  // Bytes of the record being assembled.
  virtual std::size_t partial_bytes() const = 0;

  // Queues a copy of `bytes` sized exactly.
  void emit_record(std::uint64_t number, std::uint64_t offset, std::span<const std::uint8_t> bytes) {
    Record record{number, offset, SecureBytes(bytes)};
    queued_bytes_ += record.bytes.size();
    queue_.emplace_back(std::move(record));
  }
  // The same from `buffer`, then wiped (keeping its capacity for the next record).
  void emit_record(std::uint64_t number, std::uint64_t offset, SecureBytes& buffer) {
    emit_record(number, offset, buffer.reveal());
    buffer.wipe();
  }

  void emit_error(std::uint64_t number, std::uint64_t offset, std::string reason) {
    queue_.emplace_back(RecordError{number, offset, std::move(reason)});
  }

  std::uint64_t base_ = 0;     // stream offset of the chunk being scanned
  std::uint64_t records_ = 0;  // record numbers given so far

 private:
  bool finished_ = false;
  std::deque<SplitItem> queue_;
  std::size_t queued_bytes_ = 0;
};

namespace {

constexpr std::size_t kMaxNameLength = 256;  // longer names are kept truncated to 257 bytes

bool is_xml_space(std::uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

bool is_name_start(std::uint8_t c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == ':' || c >= 0x80;
}

bool is_name_char(std::uint8_t c) {
  return is_name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

bool is_valid_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  if (!is_name_start(static_cast<std::uint8_t>(name.front()))) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return is_name_char(static_cast<std::uint8_t>(c)); });
}

std::string bytes_text(std::uint64_t n) {
  return std::to_string(n) + (n == 1 ? " byte" : " bytes");
}

// ------------------------------------------------------------------------------ XML

// A byte-level scanner of the document's markup: it knows tags, attribute values in
// quotes, comments, CDATA sections, processing instructions and DOCTYPE declarations,
// and nothing of entities or encodings (pugixml parses each record afterwards).
// Records are the elements named `record_element` that are direct children of the
// root element.
class XmlSplitter final : public RecordSplitter::Impl {
 public:
  XmlSplitter(std::string record_element, SplitterLimits limits)
      : record_element_(std::move(record_element)), limits_(limits) {}

 private:
  enum class State : std::uint8_t {
    kText,
    kLt,
    kBang,
    kComment,
    kCdata,
    kPi,
    kDoctype,
    kStartName,
    kInTag,
    kAttrValue,
    kEndName,
    kEndRest,
  };
  enum class Place : std::uint8_t { kBeforeRoot, kInRoot, kAfterRoot };
  enum class Role : std::uint8_t { kInRecord, kRoot, kStray };  // of the start tag being read

  static constexpr std::size_t kNoSegment = static_cast<std::size_t>(-1);
  static constexpr std::uint8_t kBom[3] = {0xEF, 0xBB, 0xBF};

  void scan(std::span<const std::uint8_t> chunk) override {
    chunk_ = chunk.data();
    const std::size_t n = chunk.size();
    segment_ = capturing_ ? 0 : kNoSegment;
    std::size_t i = 0;
    while (i < n) i = step(i, n);
    if (capturing_) flush(segment_, n);
    chunk_ = nullptr;
  }

  std::size_t partial_bytes() const override { return buffer_.size(); }

  void at_end() override {
    if (in_record_) {
      abandon_record("unterminated: the stream ends before </" + record_element_ + ">");
      return;
    }
    drop_capture();
    if (state_ != State::kText) {
      emit_error(0, markup_start_, std::string("the stream ends inside ") + markup_kind());
    } else if (place_ == Place::kBeforeRoot) {
      emit_error(0, base_, "no root element");
    } else if (place_ == Place::kInRoot) {
      emit_error(0, base_, "the stream ends before the root element is closed");
    }
  }

  const char* markup_kind() const {
    switch (state_) {
      case State::kComment:
        return "a comment";
      case State::kCdata:
        return "a CDATA section";
      case State::kPi:
        return "a processing instruction";
      case State::kDoctype:
        return "a DOCTYPE declaration";
      case State::kBang:
        return "a declaration";
      default:
        return "a tag";
    }
  }

  std::uint64_t pos(std::size_t i) const { return base_ + i; }

  // Handles the byte at i (or a run starting there); returns the index of the next byte
  // to look at. Returning i itself re-examines that byte in the new state (every such
  // transition goes to a state that consumes).
  std::size_t step(std::size_t i, std::size_t n) {
    const std::uint8_t c = chunk_[i];
    switch (state_) {
      case State::kText:
        return text(i, n);
      case State::kLt:
        return after_lt(i, c);
      case State::kBang:
        return bang(i, c);
      case State::kComment:
        return until_close(i, n, '-');
      case State::kCdata:
        return until_close(i, n, ']');
      case State::kPi:
        if (c == '>' && flag_) state_ = State::kText;
        flag_ = c == '?';
        return i + 1;
      case State::kDoctype:
        return doctype(i, c);
      case State::kStartName: {
        const std::size_t end = name_run(i, n, '/');
        if (end == n) return n;
        start_tag_named();
        state_ = State::kInTag;
        flag_ = false;
        return end;
      }
      case State::kInTag: {
        // Up to the next quote or '>'; flag_ remembers whether the byte before was '/'
        // ("/>" closes an empty element).
        std::size_t j = i;
        while (j < n && chunk_[j] != '"' && chunk_[j] != '\'' && chunk_[j] != '>') ++j;
        if (j > i) flag_ = chunk_[j - 1] == '/';
        if (j == n) return n;
        if (chunk_[j] == '>') {
          start_tag_closed(j, flag_);
          return j + 1;
        }
        quote_ = chunk_[j];
        state_ = State::kAttrValue;
        flag_ = false;
        return j + 1;
      }
      case State::kAttrValue: {
        const void* q = std::memchr(chunk_ + i, quote_, n - i);
        if (q == nullptr) return n;
        state_ = State::kInTag;
        return static_cast<std::size_t>(static_cast<const std::uint8_t*>(q) - chunk_) + 1;
      }
      case State::kEndName: {
        const std::size_t end = name_run(i, n, '>');
        if (end == n) return n;
        state_ = State::kEndRest;
        return end;
      }
      case State::kEndRest:
        if (c == '>') end_tag(i);
        return i + 1;
    }
    return i + 1;
  }

  // The bytes of a tag name from chunk_[i] up to XML whitespace, '>' or `stop` go to name_
  // (kept up to kMaxNameLength + 1 bytes); returns the index of the byte that ends the
  // name, or n when the chunk ends first (the name goes on in the next chunk).
  std::size_t name_run(std::size_t i, std::size_t n, std::uint8_t stop) {
    std::size_t end = i;
    while (end < n && !is_xml_space(chunk_[end]) && chunk_[end] != '>' && chunk_[end] != stop) ++end;
    if (name_.size() <= kMaxNameLength) {
      const std::size_t keep = std::min(end - i, kMaxNameLength + 1 - name_.size());
      name_.append(reinterpret_cast<const char*>(chunk_) + i, keep);
    }
    return end;
  }

  std::size_t text(std::size_t i, std::size_t n) {
    if (in_record_ || place_ == Place::kInRoot) {
      // Text inside a record is the record's; text between records is ignored.
      const void* lt = std::memchr(chunk_ + i, '<', n - i);
      if (lt == nullptr) return n;
      const auto j = static_cast<std::size_t>(static_cast<const std::uint8_t*>(lt) - chunk_);
      open_markup(j);
      return j + 1;
    }
    const std::uint8_t c = chunk_[i];
    if (c == '<') {
      open_markup(i);
      return i + 1;
    }
    if (bom_possible_ && pos(i) < 3 && c == kBom[pos(i)]) return i + 1;  // UTF-8 BOM
    bom_possible_ = false;
    if (!is_xml_space(c) && !text_reported_) {
      text_reported_ = true;
      emit_error(0, pos(i),
                 place_ == Place::kBeforeRoot ? "text before the root element"
                                              : "text after the root element");
    }
    return i + 1;
  }

  void open_markup(std::size_t i) {
    markup_start_ = pos(i);
    state_ = State::kLt;
    text_reported_ = false;
    bom_possible_ = false;
    if (!in_record_ && place_ == Place::kInRoot && stray_depth_ == 0) {
      // Perhaps a record's start tag: keep its bytes until its name is known.
      capturing_ = true;
      segment_ = i;
    }
  }

  std::size_t after_lt(std::size_t i, std::uint8_t c) {
    if (is_name_start(c)) {
      state_ = State::kStartName;
      name_.assign(1, static_cast<char>(c));
      return i + 1;
    }
    if (!in_record_) drop_capture();
    if (c == '!') {
      state_ = State::kBang;
      name_.clear();
      return i + 1;
    }
    if (c == '?') {
      state_ = State::kPi;
      flag_ = false;
      return i + 1;
    }
    if (c == '/') {
      state_ = State::kEndName;
      name_.clear();
      return i + 1;
    }
    if (!in_record_) emit_error(0, markup_start_, "'<' that starts no tag, comment or declaration");
    state_ = State::kText;
    return i;
  }

  std::size_t bang(std::size_t i, std::uint8_t c) {
    static constexpr std::string_view kComment = "--";
    static constexpr std::string_view kCdata = "[CDATA[";
    static constexpr std::string_view kDoctype = "DOCTYPE";
    name_.push_back(static_cast<char>(c));
    count_ = 0;
    if (name_ == kComment) {
      state_ = State::kComment;
    } else if (name_ == kCdata) {
      state_ = State::kCdata;
    } else if (name_ == kDoctype) {
      state_ = State::kDoctype;
      quote_ = 0;
      if (!in_record_)
        emit_error(0, markup_start_, "DOCTYPE declarations are not accepted; skipped");
    } else if (!kComment.starts_with(name_) && !kCdata.starts_with(name_) &&
               !kDoctype.starts_with(name_)) {
      if (!in_record_) {
        emit_error(0, markup_start_, "'<!' that starts no comment, CDATA section or DOCTYPE");
      }
      state_ = State::kText;
      return i;
    }
    return i + 1;
  }

  // Comments end at "-->" and CDATA sections at "]]>": `mark` is '-' or ']'.
  std::size_t until_close(std::size_t i, std::size_t n, std::uint8_t mark) {
    if (count_ == 0) {
      const void* m = std::memchr(chunk_ + i, mark, n - i);
      if (m == nullptr) return n;
      i = static_cast<std::size_t>(static_cast<const std::uint8_t*>(m) - chunk_);
    }
    const std::uint8_t c = chunk_[i];
    if (c == mark) {
      ++count_;
    } else {
      if (c == '>' && count_ >= 2) state_ = State::kText;
      count_ = 0;
    }
    return i + 1;
  }

  std::size_t doctype(std::size_t i, std::uint8_t c) {
    if (quote_ != 0) {
      if (c == quote_) quote_ = 0;
    } else if (c == '"' || c == '\'') {
      quote_ = c;
    } else if (c == '[') {
      ++count_;
    } else if (c == ']') {
      if (count_ > 0) --count_;
    } else if (c == '>' && count_ == 0) {
      state_ = State::kText;
    }
    return i + 1;
  }

  // The name of a start tag is complete (in name_).
  void start_tag_named() {
    if (in_record_) {
      role_ = Role::kInRecord;
      if (extra_levels_ > 0 || stack_.size() >= limits_.max_record_depth) {
        ++extra_levels_;
        if (problem_.empty()) {
          problem_ = "elements nested deeper than " + std::to_string(limits_.max_record_depth) +
                     " levels; skipped";
        }
      } else {
        stack_.push_back(name_);
      }
    } else if (place_ == Place::kBeforeRoot) {
      role_ = Role::kRoot;
      root_name_ = name_;
    } else if (place_ == Place::kInRoot && stray_depth_ == 0) {
      if (name_ == record_element_) {
        role_ = Role::kInRecord;
        in_record_ = true;
        number_ = ++records_;
        record_offset_ = markup_start_;
        stack_.assign(1, name_);
      } else {
        role_ = Role::kStray;
        drop_capture();
        emit_error(0, markup_start_,
                   "an element other than <" + record_element_ + "> between records; skipped");
      }
    } else {
      role_ = Role::kStray;
      if (place_ == Place::kAfterRoot && stray_depth_ == 0) {
        emit_error(0, markup_start_, "an element after the root element; skipped");
      }
    }
  }

  void start_tag_closed(std::size_t i, bool empty_element) {
    state_ = State::kText;
    switch (role_) {
      case Role::kInRecord:
        if (empty_element) close_level(i);
        break;
      case Role::kRoot:
        if (root_name_ == record_element_) {
          emit_error(0, markup_start_,
                     "the root element is <" + record_element_ +
                         ">, the record element; records must be children of a root element");
        }
        place_ = empty_element ? Place::kAfterRoot : Place::kInRoot;
        break;
      case Role::kStray:
        if (!empty_element) ++stray_depth_;
        break;
    }
  }

  // An end tag (name in name_) ends at chunk_[i].
  void end_tag(std::size_t i) {
    state_ = State::kText;
    if (in_record_) {
      if (extra_levels_ > 0) {
        --extra_levels_;
        return;
      }
      // Close the innermost open element of that name, and any left open inside it:
      // a record with an unclosed child still ends at its own end tag.
      const auto it = std::find(stack_.rbegin(), stack_.rend(), name_);
      if (it != stack_.rend()) {
        stack_.erase(std::prev(it.base()), stack_.end());
        if (stack_.empty()) complete_record(i);
      } else if (name_ == root_name_) {
        abandon_record("unterminated: the root element ends before </" + record_element_ + ">");
        place_ = Place::kAfterRoot;
      }
      // Any other stray end tag stays in the record; pugixml rejects the record later.
      return;
    }
    if (stray_depth_ > 0) {
      --stray_depth_;
    } else if (place_ == Place::kInRoot && name_ == root_name_) {
      place_ = Place::kAfterRoot;
    } else {
      emit_error(0, markup_start_,
                 place_ == Place::kInRoot ? "an end tag that closes no open element"
                                          : "an end tag outside the root element");
    }
  }

  // The element just closed at chunk_[i] by "/>" was one level of the record.
  void close_level(std::size_t i) {
    if (extra_levels_ > 0) {
      --extra_levels_;
      return;
    }
    stack_.pop_back();
    if (stack_.empty()) complete_record(i);
  }

  // Appends chunk_[from, to) to the record being captured, within the size limit.
  void flush(std::size_t from, std::size_t to) {
    if (oversized_ || from >= to) return;
    const std::size_t len = to - from;
    if (buffer_.size() + len > limits_.max_record_bytes) {
      oversized_ = true;
      buffer_.wipe();
      return;
    }
    buffer_.append(std::span<const std::uint8_t>(chunk_ + from, len));
  }

  void drop_capture() {
    capturing_ = false;
    segment_ = kNoSegment;
    oversized_ = false;
    buffer_.wipe();
  }

  void reset_record() {
    in_record_ = false;
    stack_.clear();
    extra_levels_ = 0;
    problem_.clear();
    drop_capture();
  }

  // The record's last byte is chunk_[i].
  void complete_record(std::size_t i) {
    if (buffer_.empty() && !oversized_ && problem_.empty() && segment_ != kNoSegment &&
        i + 1 - segment_ <= limits_.max_record_bytes) {
      // The whole record is in this chunk: queued straight from it, not through buffer_.
      emit_record(number_, record_offset_, std::span<const std::uint8_t>(chunk_ + segment_, i + 1 - segment_));
      reset_record();
      return;
    }
    flush(segment_, i + 1);
    if (oversized_) {
      emit_error(number_, record_offset_,
                 "larger than the limit of " + bytes_text(limits_.max_record_bytes) + "; skipped");
    } else if (!problem_.empty()) {
      emit_error(number_, record_offset_, problem_);
    } else {
      emit_record(number_, record_offset_, buffer_);
    }
    reset_record();
  }

  void abandon_record(std::string reason) {
    emit_error(number_, record_offset_, std::move(reason));
    reset_record();
  }

  // Configuration.
  const std::string record_element_;
  const SplitterLimits limits_;

  // Scanner state.
  const std::uint8_t* chunk_ = nullptr;  // during scan()
  State state_ = State::kText;
  std::uint8_t quote_ = 0;  // in an attribute value or DOCTYPE literal
  bool flag_ = false;       // kInTag: last byte was '/'; kPi: last byte was '?'
  std::size_t count_ = 0;   // '-' or ']' run; DOCTYPE '[' depth
  std::string name_;        // tag name being read (truncated), or "<!" lookahead
  std::uint64_t markup_start_ = 0;
  Role role_ = Role::kStray;
  bool text_reported_ = false;
  bool bom_possible_ = true;

  // Document structure outside records.
  Place place_ = Place::kBeforeRoot;
  std::string root_name_;
  std::uint64_t stray_depth_ = 0;  // open elements that are neither root nor record

  // The record being captured.
  bool capturing_ = false;            // bytes from segment_ on belong to buffer_
  std::size_t segment_ = kNoSegment;  // in the current chunk
  bool in_record_ = false;
  std::uint64_t number_ = 0;
  std::uint64_t record_offset_ = 0;
  std::vector<std::string> stack_;  // names of the open elements, the record's first
  std::uint64_t extra_levels_ = 0;  // open elements beyond max_record_depth
  std::string problem_;             // why the record will be an error, if it will
  bool oversized_ = false;
  SecureBytes buffer_;
};

// ---------------------------------------------------------------------- fixed width

// record_length == 0: one record per line. Otherwise records of exactly record_length
// bytes; whether the file puts a line end after each record is decided by what follows
// the first record (or a line end inside it): with line ends every line must be
// exactly one record; without, records follow each other and a stray line end between
// two records is tolerated.
class FixedWidthSplitter final : public RecordSplitter::Impl {
 public:
  FixedWidthSplitter(std::size_t record_length, SplitterLimits limits)
      : length_(record_length),
        limit_(record_length > 0 ? record_length : limits.max_record_bytes),
        framing_(record_length > 0 ? Framing::kUnknown : Framing::kLines) {}

 private:
  enum class Framing : std::uint8_t { kUnknown, kLines, kBlocks };
  static constexpr std::uint8_t kCr = '\r';

  void scan(std::span<const std::uint8_t> chunk) override {
    const std::uint8_t* p = chunk.data();
    const std::size_t n = chunk.size();
    std::size_t i = 0;
    while (i < n) {
      if (pending_cr_) {
        // A CR followed by LF is a line end; any other CR is data.
        pending_cr_ = false;
        if (p[i] == '\n') {
          line_end(false);
          ++i;
        } else {
          data(&kCr, 1, cr_offset_);
        }
        continue;
      }
      i = framing_ == Framing::kLines ? scan_line(p, n, i) : scan_record(p, n, i);
    }
  }

  std::size_t partial_bytes() const override { return buffer_.size(); }

  void at_end() override {
    pending_cr_ = false;  // a CR as the stream's last byte ends the last line
    line_end(true);
  }

  // kLines: everything up to the next LF (less a CR before it) is line content.
  std::size_t scan_line(const std::uint8_t* p, std::size_t n, std::size_t i) {
    const void* lf = std::memchr(p + i, '\n', n - i);
    const std::size_t end =
        lf == nullptr ? n : static_cast<std::size_t>(static_cast<const std::uint8_t*>(lf) - p);
    std::size_t data_end = end;
    if (data_end > i && p[data_end - 1] == '\r') {
      --data_end;
      if (lf == nullptr) {
        pending_cr_ = true;
        cr_offset_ = base_ + data_end;
      }
    }
    data(p + i, data_end - i, base_ + i);
    if (lf == nullptr) return n;
    line_end(false);
    return end + 1;
  }

  // kUnknown and kBlocks: record bytes up to the record's length, a CR or an LF.
  std::size_t scan_record(const std::uint8_t* p, std::size_t n, std::size_t i) {
    const std::uint8_t c = p[i];
    if (c == '\n') {
      line_end(false);
      return i + 1;
    }
    if (c == '\r') {
      pending_cr_ = true;
      cr_offset_ = base_ + i;
      return i + 1;
    }
    if (framing_ == Framing::kUnknown) {
      data(p + i, 1, base_ + i);
      return i + 1;
    }
    const std::size_t take = std::min<std::size_t>(length_ - cur_len_, n - i);
    std::size_t stop = i + take;
    for (const std::uint8_t mark : {std::uint8_t{'\n'}, kCr}) {
      const void* m = std::memchr(p + i, mark, stop - i);
      if (m != nullptr) stop = static_cast<std::size_t>(static_cast<const std::uint8_t*>(m) - p);
    }
    data(p + i, stop - i, base_ + i);
    return stop;
  }

  // Record content (never a line end) starting at stream offset `offset`.
  void data(const std::uint8_t* bytes, std::size_t len, std::uint64_t offset) {
    if (len == 0) return;
    if (framing_ == Framing::kUnknown && cur_len_ == length_) {
      // A whole record, not followed by a line end: records follow each other.
      framing_ = Framing::kBlocks;
      emit_record(++records_, cur_offset_, buffer_);
      cur_len_ = 0;
    }
    if (cur_len_ == 0) cur_offset_ = offset;
    if (!overflow_ && buffer_.size() + len > limit_) {
      overflow_ = true;
      buffer_.wipe();
    }
    if (!overflow_) buffer_.append(std::span<const std::uint8_t>(bytes, len));
    cur_len_ += len;
    if (framing_ == Framing::kBlocks && cur_len_ == length_) {
      emit_record(++records_, cur_offset_, buffer_);
      cur_len_ = 0;
    }
  }

  // A line end (LF or CRLF), or the end of the stream.
  void line_end(bool end_of_stream) {
    if (framing_ == Framing::kUnknown && !end_of_stream) framing_ = Framing::kLines;
    if (cur_len_ == 0) return;  // an empty line, or a line end between two blocks
    const std::uint64_t number = ++records_;
    if (length_ > 0 && cur_len_ != length_) {
      std::string reason =
          "wrong length: " + bytes_text(cur_len_) + ", expected " + std::to_string(length_);
      if (end_of_stream && framing_ == Framing::kBlocks) reason += " (the stream ends inside it)";
      emit_error(number, cur_offset_, std::move(reason));
      buffer_.wipe();
    } else if (overflow_) {
      emit_error(number, cur_offset_,
                 "longer than the limit of " + bytes_text(limit_) + "; skipped");
    } else {
      emit_record(number, cur_offset_, buffer_);
    }
    cur_len_ = 0;
    overflow_ = false;
  }

  const std::size_t length_;  // 0: one record per line
  const std::size_t limit_;   // bytes buffered for one record
  Framing framing_;
  SecureBytes buffer_;
  std::uint64_t cur_len_ = 0;  // bytes of the current record, buffered or not
  std::uint64_t cur_offset_ = 0;
  bool overflow_ = false;    // the current record is longer than limit_
  bool pending_cr_ = false;  // a CR ended the last chunk
  std::uint64_t cr_offset_ = 0;
};

}  // namespace

Result<RecordSplitter> RecordSplitter::create(const RecordLayout& layout, SplitterLimits limits) {
  if (limits.max_record_bytes == 0 || limits.max_record_depth == 0) {
    return Error(ErrorCode::kInvalidArgument, "record splitter: limits must be positive");
  }
  switch (layout.format) {
    case RecordFormat::kXml:
      if (!is_valid_name(layout.record_element)) {
        return Error(ErrorCode::kInvalidArgument,
                     "record splitter: the record element is not an XML name of at most " +
                         std::to_string(kMaxNameLength) + " bytes");
      }
      return RecordSplitter(std::make_unique<XmlSplitter>(layout.record_element, limits));
    case RecordFormat::kFixedWidth:
      if (layout.record_length > limits.max_record_bytes) {
        return Error(ErrorCode::kInvalidArgument,
                     "record splitter: record_length " + std::to_string(layout.record_length) +
                         " is above the limit of " + bytes_text(limits.max_record_bytes));
      }
      return RecordSplitter(std::make_unique<FixedWidthSplitter>(layout.record_length, limits));
  }
  return Error(ErrorCode::kInvalidArgument, "record splitter: unknown record format");
}

RecordSplitter::RecordSplitter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RecordSplitter::RecordSplitter(RecordSplitter&& other) noexcept = default;
RecordSplitter& RecordSplitter::operator=(RecordSplitter&& other) noexcept = default;
RecordSplitter::~RecordSplitter() = default;

void RecordSplitter::feed(std::span<const std::uint8_t> chunk) { impl_->feed(chunk); }
void RecordSplitter::finish() { impl_->finish(); }
std::optional<SplitItem> RecordSplitter::next() { return impl_->next(); }
std::size_t RecordSplitter::buffered_bytes() const { return impl_->buffered_bytes(); }
std::uint64_t RecordSplitter::bytes_fed() const { return impl_->bytes_fed(); }
bool RecordSplitter::finished() const { return impl_->finished(); }

}  // namespace persoflow::formats
