#include "pipeline/prep_workers.h"

#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdlib>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/profile_parser.h"
#include "engine/hex.h"
#include "formats/big_endian_codec.h"
#include "hsm/hsm_keys.h"
#include "pipeline/exit_codes.h"
#include "pipeline/hsm_session.h"
#include "pipeline/run_journal.h"

extern char** environ;

namespace persoflow::pipeline {
namespace {

constexpr std::uint32_t kMaxFrame = 1u << 30;

struct Frame {
  char type = 0;
  Bytes payload;
};

Error io_error(std::string what) { return Error(ErrorCode::kIo, std::move(what) + ": " + std::strerror(errno)); }

Status write_all(int fd, const std::uint8_t* p, std::size_t n, const std::string& peer) {
  while (n > 0) {
    // MSG_NOSIGNAL: a worker that died is an error to report, not a SIGPIPE.
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return io_error("writing to " + peer);
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return ok_status();
}

// Reads exactly n bytes; false at end of stream before the first byte.
Result<bool> read_all(int fd, std::uint8_t* p, std::size_t n, const std::string& peer) {
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::recv(fd, p + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return io_error("reading from " + peer);
    }
    if (r == 0) {
      if (got == 0) return false;
      return Error(ErrorCode::kIo, peer + ": the stream ended inside a frame");
    }
    got += static_cast<std::size_t>(r);
  }
  return true;
}

Status send_frame(int fd, char type, std::span<const std::uint8_t> a, std::span<const std::uint8_t> b,
                  const std::string& peer) {
  const std::uint64_t length = 1 + a.size() + b.size();
  if (length > kMaxFrame) return Error(ErrorCode::kInternal, peer + ": a frame of " + std::to_string(length) + " bytes");
  std::uint8_t head[5];
  formats::store_be(head, length, 4);
  head[4] = static_cast<std::uint8_t>(type);
  PF_TRY(write_all(fd, head, sizeof head, peer));
  if (!a.empty()) PF_TRY(write_all(fd, a.data(), a.size(), peer));
  if (!b.empty()) PF_TRY(write_all(fd, b.data(), b.size(), peer));
  return ok_status();
}

Status send_json(int fd, char type, const nlohmann::ordered_json& j, const std::string& peer) {
  const std::string text = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  return send_frame(fd, type, std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), {}, peer);
}

// nullopt: the peer closed the stream between frames.
Result<std::optional<Frame>> recv_frame(int fd, const std::string& peer) {
  std::uint8_t head[5];
  PF_ASSIGN_OR_RETURN(const bool any, read_all(fd, head, sizeof head, peer));
  if (!any) return std::optional<Frame>{};
  const auto length = static_cast<std::uint32_t>(formats::load_be(head, 4));
  if (length == 0 || length > kMaxFrame) {
    return Error(ErrorCode::kParse, peer + ": a frame of length " + std::to_string(length));
  }
  Frame f;
  f.type = static_cast<char>(head[4]);
  f.payload.resize(length - 1);
  if (!f.payload.empty()) {
    PF_ASSIGN_OR_RETURN(const bool whole, read_all(fd, f.payload.data(), f.payload.size(), peer));
    if (!whole) return Error(ErrorCode::kIo, peer + ": the stream ended inside a frame");
  }
  return std::optional<Frame>(std::move(f));
}

Result<nlohmann::json> parse_json(std::span<const std::uint8_t> bytes, const std::string& peer) {
  auto j = nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr, false);
  if (j.is_discarded()) return Error(ErrorCode::kParse, peer + ": a frame that is not JSON");
  return j;
}

nlohmann::ordered_json error_json(const Error& e) {
  return {{"code", static_cast<int>(e.code())}, {"message", e.message()}};
}

Error error_from_json(const nlohmann::json& j, const std::string& peer) {
  const int code = j.value("code", static_cast<int>(ErrorCode::kInternal));
  if (code < 0 || code > static_cast<int>(ErrorCode::kInternal)) {
    return Error(ErrorCode::kInternal, peer + ": an error of unknown code " + std::to_string(code));
  }
  return Error(static_cast<ErrorCode>(code), j.value("message", std::string("?")));
}

std::string self_exe() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.string();
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "ended (wait status " + std::to_string(status) + ")";
}

}  // namespace

struct PrepWorkerPool::Worker {
  pid_t pid = -1;
  int fd = -1;
  std::uint64_t cards = 0;
  std::uint32_t seq = 0;
  std::uint64_t retries = 0;  // as the worker last reported it (its total)
  std::string name() const { return "prep worker (pid " + std::to_string(pid) + ")"; }

  // Closes the socket (the worker's signal to end, or its end already) and waits for the
  // process: its wait status, or nullopt when waiting failed.
  std::optional<int> reap() {
    if (fd >= 0) ::close(fd);
    fd = -1;
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(pid, &status, 0);
    } while (r < 0 && errno == EINTR);
    pid = -1;
    return r < 0 ? std::nullopt : std::optional<int>(status);
  }

  // Ends a worker that is idle: it must exit 0.
  Status end() {
    if (pid <= 0) {
      if (fd >= 0) ::close(fd);
      fd = -1;
      return ok_status();
    }
    const std::string who = name();
    const auto status = reap();
    if (!status) return io_error("waiting for " + who);
    if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
      return Error(ErrorCode::kIo, who + " " + describe_status(*status) + " when asked to end");
    }
    return ok_status();
  }

  // The worker's stream ended without an answer: it died. Why, as the OS says.
  // kHsm: a worker's work is the HSM's, and what kills one is most often the module (a
  // crash in the vendor library) or memory; either way the run is resumable.
  Error died(const std::string& doing) {
    if (pid <= 0) {
      if (fd >= 0) ::close(fd);
      fd = -1;
      return Error(ErrorCode::kHsm, "a prep worker ended " + doing);
    }
    const std::string who = name();
    const auto status = reap();
    return Error(ErrorCode::kHsm, who + " " + (status ? describe_status(*status) : std::string("ended")) + " " + doing);
  }

  ~Worker() { (void)end(); }
};

struct PrepWorkerPool::State {
  std::mutex mu;
  std::condition_variable idle_cv;
  std::vector<std::unique_ptr<Worker>> idle;
  std::uint64_t retries = 0;
  std::uint64_t started = 0;
};

std::size_t default_prep_workers(const config::HsmSettings& hsm, std::size_t segments, KeyHandling mode) {
  if (mode == KeyHandling::kHost) return 0;
  const std::string name = std::filesystem::path(hsm.module).filename().string();
  if (name.find("softhsm") == std::string::npos) return 0;
  const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
  const std::size_t n = std::min(cores, segments);
  return n <= 1 ? 0 : n;
}

Result<std::unique_ptr<PrepWorkerPool::Worker>> PrepWorkerPool::spawn() {
  const std::string exe = self_exe();
  if (exe.empty()) return io_error("finding the persoflow executable (/proc/self/exe) to start prep workers");
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return io_error("creating a prep worker's socket");
  std::vector<std::string> args = {exe, "--module", config_.hsm.module};
  if (!config_.hsm.token.empty()) args.insert(args.end(), {"--token", config_.hsm.token});
  args.insert(args.end(), {config_.hsm.pin.kind == config::PinSource::Kind::kEnv ? "--pin-env" : "--pin-file",
                           config_.hsm.pin.name, "--max-sessions", std::to_string(config_.hsm.max_sessions),
                           "prep-worker", "--fd", "3"});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // fd 3 in the worker is its end of the socket (dup2 clears close-on-exec; the parent's
  // other sockets stay closed in it, so each worker sees its own end-of-stream).
  posix_spawn_file_actions_adddup2(&actions, sv[1], 3);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(sv[1]);
  if (rc != 0) {
    ::close(sv[0]);
    errno = rc;
    return io_error("starting a prep worker (" + exe + ")");
  }
  auto w = std::make_unique<Worker>();
  w->pid = pid;
  w->fd = sv[0];
  {
    std::lock_guard lock(state_->mu);
    ++state_->started;
  }
  const nlohmann::ordered_json init = {
      {"profile", config_.profile_path},
      {"xof", config_.xof_path},
      {"registry", config_.registry_path},
      {"lookup_kind", config_.lookup_kind == formats::SeLookupKind::kMsi ? "msi" : "se_id"},
      {"bundle_header", to_hex(formats::serialize_bundle_header(config_.transport_header))}};
  if (auto s = send_json(w->fd, 'I', init, w->name()); !s) return w->died("before it was initialized");
  return w;
}

namespace {

// Waits for a new worker's 'R' (or its error).
Status await_ready(PrepWorkerPool::Worker& w) {
  const std::string who = w.name();
  PF_ASSIGN_OR_RETURN(auto frame, recv_frame(w.fd, who));
  if (!frame) return w.died("while starting");
  PF_ASSIGN_OR_RETURN(const nlohmann::json j, parse_json(frame->payload, who));
  if (frame->type == 'E') return with_context(error_from_json(j, who), who + " could not start");
  if (frame->type != 'R') return Error(ErrorCode::kInternal, who + ": an unexpected frame while starting");
  return ok_status();
}

}  // namespace

Result<std::unique_ptr<PrepWorkerPool>> PrepWorkerPool::start(PrepWorkerConfig config, std::size_t workers) {
  std::unique_ptr<PrepWorkerPool> pool(new PrepWorkerPool(std::move(config)));
  pool->size_ = workers;
  // Started together, then awaited: their logins and key lookups overlap.
  std::vector<std::unique_ptr<Worker>> started;
  for (std::size_t i = 0; i < workers; ++i) {
    PF_ASSIGN_OR_RETURN(auto w, pool->spawn());
    started.push_back(std::move(w));
  }
  for (auto& w : started) PF_TRY(await_ready(*w));
  pool->state_->idle = std::move(started);
  return pool;
}

PrepWorkerPool::PrepWorkerPool(PrepWorkerConfig config)
    : config_(std::move(config)), state_(std::make_unique<State>()) {}

PrepWorkerPool::~PrepWorkerPool() { (void)stop(); }

Status PrepWorkerPool::stop() {
  std::vector<std::unique_ptr<Worker>> all;
  {
    std::lock_guard lock(state_->mu);
    all = std::move(state_->idle);
    state_->idle.clear();
  }
  Status first = ok_status();
  for (auto& w : all) {
    auto s = w->end();
    if (!s && first) first = s;
  }
  return first;
}

std::uint64_t PrepWorkerPool::retries() const {
  std::lock_guard lock(state_->mu);
  return state_->retries;
}

std::uint64_t PrepWorkerPool::processes_started() const {
  std::lock_guard lock(state_->mu);
  return state_->started;
}

Status PrepWorkerPool::prepare(SegmentWork& work) {
  std::unique_ptr<Worker> w;
  {
    std::unique_lock lock(state_->mu);
    state_->idle_cv.wait(lock, [&] { return !state_->idle.empty(); });
    w = std::move(state_->idle.back());
    state_->idle.pop_back();
  }
  // Every way out gives the pool a worker back (a dead one is replaced on next use), so
  // the other threads waiting for one never wait forever.
  auto give_back = [&](std::unique_ptr<Worker> worker) {
    std::lock_guard lock(state_->mu);
    state_->idle.push_back(std::move(worker));
    state_->idle_cv.notify_one();
  };
  if (w->fd < 0 || (config_.recycle_cards != 0 && w->cards >= config_.recycle_cards)) {
    // Recycled: a fresh process gives back what the module kept of the cards before.
    if (auto s = w->end(); !s) {
      give_back(std::move(w));
      return s;
    }
    auto fresh = spawn();
    if (fresh) {
      if (auto s = await_ready(**fresh); !s) {
        give_back(std::move(*fresh));
        return s;
      }
      w = std::move(*fresh);
    } else {
      give_back(std::move(w));
      return fresh.error();
    }
  }
  const std::string who = w->name();
  const std::string doing = "while preparing XOF segment " + std::to_string(work.xof_segment);
  const std::uint32_t seq = w->seq++;
  nlohmann::ordered_json cards = nlohmann::ordered_json::array();
  for (std::size_t c = 0; c < work.cards.size(); ++c) {
    const PlannedCard& p = work.cards[c];
    nlohmann::ordered_json row = {p.index, p.position, p.se_row, p.counter};
    if (p.se_row == 0) row.push_back(c < work.se_keys.size() ? work.se_keys[c] : std::string());
    cards.push_back(std::move(row));
  }
  if (auto s = send_json(w->fd, 'W', {{"seq", seq}, {"segment", work.xof_segment}, {"cards", std::move(cards)}}, who);
      !s) {
    Error e = w->died(doing);
    give_back(std::move(w));
    return e;
  }
  auto frame = recv_frame(w->fd, who);
  if (!frame || !*frame) {
    // The stream broke or ended without an answer: the worker is gone, or no longer in step.
    Error died = w->died(doing);
    give_back(std::move(w));
    return frame ? died : frame.error();
  }
  auto answer = [&]() -> Status {
    const Frame& f = **frame;
    if (f.type == 'E') {
      PF_ASSIGN_OR_RETURN(const nlohmann::json j, parse_json(f.payload, who));
      return error_from_json(j, who);
    }
    if (f.type != 'D' || f.payload.size() < 4) return Error(ErrorCode::kInternal, who + ": an unexpected frame " + doing);
    const auto json_length = static_cast<std::uint32_t>(formats::load_be(f.payload.data(), 4));
    if (json_length > f.payload.size() - 4) return Error(ErrorCode::kParse, who + ": a malformed answer " + doing);
    const auto body = std::span<const std::uint8_t>(f.payload).subspan(4);
    PF_ASSIGN_OR_RETURN(const nlohmann::json j, parse_json(body.first(json_length), who));
    const std::string outcome = j.value("outcome", std::string());
    if (j.value("seq", std::uint32_t{~0u}) != seq || outcome.size() != work.cards.size()) {
      return Error(ErrorCode::kInternal, who + ": an answer for other cards " + doing);
    }
    const std::size_t prepared = static_cast<std::size_t>(std::count(outcome.begin(), outcome.end(), '1'));
    work.done.clear();
    if (prepared != 0) {  // a segment whose cards were all rejected sends no bundle segment
      PF_ASSIGN_OR_RETURN(work.done, formats::decode_bundle_segment(config_.transport_header,
                                                                    body.subspan(json_length), seq, who));
    }
    if (work.done.size() != prepared) return Error(ErrorCode::kInternal, who + ": prepared cards missing " + doing);
    for (const auto& r : j.value("rejects", nlohmann::json::array())) {
      PF_ASSIGN_OR_RETURN(Reject reject, reject_from_json(r, who));
      work.rejects.push_back(std::move(reject));
    }
    if (work.rejects.size() != work.cards.size() - prepared) {
      return Error(ErrorCode::kInternal, who + ": rejects missing " + doing);
    }
    work.outcome.clear();
    for (const char c : outcome) work.outcome.push_back(c == '1' ? 1 : 0);
    work.apdus = j.value("apdus", std::uint64_t{0});
    const std::uint64_t total = j.value("retries", std::uint64_t{0});
    {
      std::lock_guard lock(state_->mu);
      state_->retries += total - std::min(total, w->retries);
    }
    w->retries = total;
    w->cards += work.cards.size();
    return ok_status();
  }();
  give_back(std::move(w));
  return answer;
}

namespace {

// Test hooks (docs/fault-injection.md "Worker processes"), read by the worker:
//   PERSOFLOW_TEST_WORKER_DIE_AT=N     the worker kills itself (SIGKILL) on its Nth work frame;
//   PERSOFLOW_TEST_WORKER_TOKEN=LABEL  the worker opens this token instead of the parent's.
std::uint64_t worker_die_at() {
  const char* v = std::getenv("PERSOFLOW_TEST_WORKER_DIE_AT");
  return v != nullptr ? std::strtoull(v, nullptr, 10) : 0;
}

}  // namespace

int run_prep_worker(const config::HsmSettings& given_hsm, int fd) {
  config::HsmSettings hsm = given_hsm;
  if (const char* token = std::getenv("PERSOFLOW_TEST_WORKER_TOKEN")) hsm.token = token;
  const std::uint64_t die_at = worker_die_at();
  std::uint64_t frames = 0;
  const std::string peer = "prep worker " + std::to_string(::getpid()) + ": its parent";
  // Nothing a worker prints belongs on the parent's stdout (its reports and summaries).
  ::dup2(2, 1);
  auto send_error = [&](const Error& e) {
    (void)send_json(fd, 'E', error_json(e), peer);
    return exit_code_for(e);
  };
  auto init_frame = recv_frame(fd, peer);
  if (!init_frame) return send_error(init_frame.error());
  if (!*init_frame) return kExitOk;
  if ((*init_frame)->type != 'I') return send_error(Error(ErrorCode::kInternal, peer + ": no init frame"));
  auto init = parse_json((*init_frame)->payload, peer);
  if (!init) return send_error(init.error());

  // Everything the parallel stage needs, opened as prep opens it.
  struct Setup {
    HsmSession session;
    Profile profile;
    std::optional<formats::XofReader> reader;
    std::optional<PrepKeys> keys;
    std::optional<formats::SeRegistry> registry;
    std::optional<CardPreparer> preparer;
    formats::BundleHeader transport;
    SegmentContext context;
  };
  auto setup = std::make_unique<Setup>();
  auto open = [&]() -> Status {
    std::string profile_path, xof_path, registry_path, lookup_kind, header_hex;
    try {
      profile_path = init->at("profile").get<std::string>();
      xof_path = init->at("xof").get<std::string>();
      registry_path = init->at("registry").get<std::string>();
      lookup_kind = init->at("lookup_kind").get<std::string>();
      header_hex = init->at("bundle_header").get<std::string>();
    } catch (const nlohmann::json::exception&) {
      return Error(ErrorCode::kInternal, peer + ": a malformed init frame");
    }
    // SoftHSM's file store can be read while another process (the parent, a sibling
    // worker logging in at the same moment) rewrites the token's files. Measured with
    // three `persoflow keys list` started together, 40 times: a token briefly "not found",
    // C_GetTokenInfo's CKR_GENERAL_ERROR, and C_Login's CKR_USER_PIN_NOT_INITIALIZED. Such
    // a start is tried again a few times; a wrong or locked PIN is not (it would count
    // against the PIN).
    auto transient = [](const Error& e) {
      constexpr unsigned long kCkrUserPinNotInitialized = 0x102;
      return e.code() == ErrorCode::kHsm || e.code() == ErrorCode::kNotFound ||
             (e.code() == ErrorCode::kAuth && e.ck_rv() == kCkrUserPinNotInitialized);
    };
    auto opened = open_hsm(hsm);
    for (int attempt = 1; !opened && attempt < 6 && transient(opened.error()); ++attempt) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25 << attempt));
      opened = open_hsm(hsm);
    }
    if (!opened) return opened.error();
    setup->session = std::move(*opened);
    hsm::KeyStore& keys = *setup->session.keys;
    PF_ASSIGN_OR_RETURN(setup->profile, config::load_profile(profile_path));
    if (!setup->profile.prep) return Error(ErrorCode::kInvalidArgument, profile_path + ": the profile has no <prep> element");
    PF_ASSIGN_OR_RETURN(hsm::KeyInfo integrity_info, keys.find(setup->profile.integrity_key_uri));
    auto integrity = std::make_unique<hsm::HsmMacKey>(keys, integrity_info);
    PF_ASSIGN_OR_RETURN(formats::XofReader reader, formats::XofReader::open(xof_path, *integrity));
    setup->reader.emplace(std::move(reader));
    PF_ASSIGN_OR_RETURN(PrepKeys k, resolve_prep_keys(setup->profile, profile_path, setup->reader->header(), keys,
                                                      std::move(integrity), integrity_info));
    setup->keys.emplace(std::move(k));
    PF_TRY(setup->reader->check_keys(setup->keys->class_ptrs));
    PF_ASSIGN_OR_RETURN(formats::SeRegistry registry, formats::SeRegistry::open(registry_path, false));
    PF_TRY(registry.limit_cache(kReaderCacheKib));
    setup->registry.emplace(std::move(registry));
    PF_ASSIGN_OR_RETURN(const Bytes header_bytes, from_hex(header_hex));
    PF_ASSIGN_OR_RETURN(setup->transport, formats::parse_bundle_header(header_bytes, peer));
    setup->preparer.emplace(setup->profile, setup->reader->header(), keys, *setup->keys);
    setup->context.reader = &*setup->reader;
    setup->context.class_keys = setup->keys->class_ptrs;
    setup->context.preparer = &*setup->preparer;
    setup->context.lookup_kind = lookup_kind == "msi" ? formats::SeLookupKind::kMsi : formats::SeLookupKind::kSeId;
    setup->context.registry_path = registry_path;
    return ok_status();
  };
  if (auto s = open(); !s) return send_error(s.error());
  if (auto s = send_json(fd, 'R', {{"pid", ::getpid()}}, peer); !s) return exit_code_for(s.error());

  for (;;) {
    auto frame = recv_frame(fd, peer);
    if (!frame) return exit_code_for(frame.error());
    if (!*frame) return kExitOk;  // the parent is done with this worker
    if (++frames == die_at) ::raise(SIGKILL);
    auto answer = [&]() -> Status {
      if ((*frame)->type != 'W') return Error(ErrorCode::kInternal, peer + ": an unexpected frame");
      PF_ASSIGN_OR_RETURN(const nlohmann::json j, parse_json((*frame)->payload, peer));
      SegmentWork work;
      std::uint32_t seq = 0;
      try {
        seq = j.at("seq").get<std::uint32_t>();
        work.xof_segment = j.at("segment").get<std::uint32_t>();
        for (const auto& row : j.at("cards")) {
          PlannedCard p;
          p.segment = work.xof_segment;
          p.index = row.at(0).get<std::uint32_t>();
          p.position = row.at(1).get<std::uint64_t>();
          p.se_row = row.at(2).get<std::int64_t>();
          p.counter = row.at(3).get<std::uint32_t>();
          work.cards.push_back(p);
          work.se_keys.push_back(row.size() > 4 ? row.at(4).get<std::string>() : std::string());
        }
      } catch (const nlohmann::json::exception&) {
        return Error(ErrorCode::kInternal, peer + ": a malformed work frame");
      }
      PF_ASSIGN_OR_RETURN(work.raw, setup->reader->read_segment(work.xof_segment));
      PF_TRY(prepare_segment(work, *setup->registry, setup->context));
      formats::BundleEncodedSegment enc;
      if (!work.done.empty()) {
        PF_ASSIGN_OR_RETURN(enc, formats::encode_bundle_segment(setup->transport, seq, work.done));
      }
      std::string outcome;
      for (const std::uint8_t o : work.outcome) outcome.push_back(o != 0 ? '1' : '0');
      nlohmann::ordered_json rejects = nlohmann::ordered_json::array();
      for (const Reject& r : work.rejects) rejects.push_back(reject_to_json(r));
      const std::string text = nlohmann::ordered_json{{"seq", seq},
                                                      {"outcome", outcome},
                                                      {"rejects", std::move(rejects)},
                                                      {"apdus", work.apdus},
                                                      {"retries", setup->preparer->retries()}}
                                   .dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
      Bytes head(4 + text.size());
      const auto n = static_cast<std::uint32_t>(text.size());
      formats::store_be(head.data(), n, 4);
      std::memcpy(head.data() + 4, text.data(), text.size());
      return send_frame(fd, 'D', head, enc.bytes, peer);
    }();
    if (!answer) {
      // The parent stops the run on any error; the worker waits to be closed.
      if (auto s = send_json(fd, 'E', error_json(answer.error()), peer); !s) return exit_code_for(s.error());
    }
  }
}

}  // namespace persoflow::pipeline
