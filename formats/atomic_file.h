// An output file published completely or not at all (domain invariant 3).
//
// AtomicFile::create makes a temporary file next to the final path (same directory, so
// the same file system): ".<name>.tmp-XXXXXX", mode 0600 unless told otherwise. Bytes are
// appended with write() and earlier ones patched with pwrite(). commit() fsyncs the file,
// gives it its final name in one step (rename(2), or link(2) when an existing file must
// not be replaced) and fsyncs the directory so the name survives a crash. Until commit()
// returns, the final path is untouched: absent, or still the previous file. Destroying an
// uncommitted AtomicFile (an error, an exception, a cancelled run) closes and unlinks the
// temporary file; only a crash can leave one behind, under its ".tmp-" name.
//
// The temporary file is flock()ed (LOCK_EX) by its writer until it is published or
// abandoned. create() first removes the temporaries a killed process left for the same
// final path: ".<name>.tmp-XXXXXX" regular files in that directory, last modified 10 s ago
// or more, whose lock it can take (no living writer on this machine holds it). A temporary
// being written by another process is never touched (the age covers the instant between
// its creation and its writer's flock).
//
// Used by the XOF writer; reject reports and script bundles use it the same way.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/result.h"

namespace persoflow::formats {

class AtomicFile {
 public:
  enum class Existing {
    kReplace,  // commit() atomically replaces a file already at the final path
    kRefuse,   // create() and commit() fail with kAlreadyExists if the final path exists
  };
  struct Options {
    Existing existing = Existing::kReplace;
    mode_t mode = 0600;
  };

  // kNotFound when the directory does not exist, kAlreadyExists (kRefuse) when the final
  // path exists, kIo for other failures.
  static Result<AtomicFile> create(const std::string& final_path, Options options);
  static Result<AtomicFile> create(const std::string& final_path) {
    return create(final_path, Options{});
  }

  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&& other) noexcept;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() { abandon(); }

  // Appends at the end of what was written so far.
  Status write(std::span<const std::uint8_t> bytes);
  // Overwrites bytes already written (offset + size <= size()).
  Status pwrite(std::uint64_t offset, std::span<const std::uint8_t> bytes);
  // Bytes written so far: the offset of the next write().
  std::uint64_t size() const { return size_; }

  // fsync, publish under the final name, fsync the directory. After a failed write the
  // file is refused (kInternal): it may hold a hole. Once committed, the object is inert.
  Status commit();
  // Closes and unlinks the temporary file if not committed. Idempotent.
  void abandon();

  bool committed() const { return committed_; }
  const std::string& final_path() const { return final_path_; }
  const std::string& temp_path() const { return temp_path_; }

  // The temporaries of `final_path` that killed processes left (see above), removed;
  // their paths. Best effort: what cannot be examined or removed is left alone. create()
  // calls it.
  static std::vector<std::string> remove_abandoned_temporaries(const std::string& final_path);

 private:
  AtomicFile(std::string final_path, std::string temp_path, int fd, int lock_fd, Existing existing)
      : final_path_(std::move(final_path)),
        temp_path_(std::move(temp_path)),
        fd_(fd),
        lock_fd_(lock_fd),
        existing_(existing) {}
  Error io_error(const std::string& what, int err) const;
  void release_lock();

  std::string final_path_;
  std::string temp_path_;
  int fd_ = -1;
  int lock_fd_ = -1;  // a second description of the temporary file, holding its flock until
                      // the rename (fd_ is closed before it)
  Existing existing_ = Existing::kReplace;
  std::uint64_t size_ = 0;
  bool committed_ = false;  // published under the final name
  bool closed_ = false;     // committed or abandoned: nothing left to do
  bool failed_ = false;     // a write failed: the content cannot be trusted
};

// A scratch file without a name in `dir` (the file system the operator gave room on): it
// disappears with its descriptor, when its owner closes it or the process dies. O_TMPFILE
// never gives it a name; where the file system or kernel refuses O_TMPFILE (or
// `try_o_tmpfile` is false: tests), mkostemp + unlink gives it one for an instant,
// `dir/name_prefix-XXXXXX`, so that a crash in between leaves a recognizable file. The
// descriptor (O_RDWR, O_CLOEXEC), or -1 with errno set. Used by the bundle writer's index
// runs and the import's duplicate-id set.
int open_unnamed_file(const std::string& dir, const std::string& name_prefix, bool try_o_tmpfile = true);

// pwrite / pread of every byte of a scratch file: 0, or the errno of the failure (EIO for
// a read past the end: the file is shorter than what was written to it).
int pwrite_all(int fd, const void* data, std::size_t bytes, std::uint64_t offset);
int pread_all(int fd, void* data, std::size_t bytes, std::uint64_t offset);

}  // namespace persoflow::formats
