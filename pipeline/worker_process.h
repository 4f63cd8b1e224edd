// Worker processes for an HSM-bound stage (docs/cli.md#workers): the part `prep --workers`
// and `import --workers` share.
//
// SoftHSM (like other software modules) serializes PKCS#11 calls within one process: two
// threads reach 0.5-0.9x of one, while two processes reach 2x (hsm-facts.md). So a command
// starts N copies of persoflow (a hidden `prep-worker` or `import-worker` command), each
// with its own module instance, login and sessions, and hands them work over a socket.
//
// Wire: a Unix stream socket per worker; frames of u32 length (big-endian), u8 type,
// payload. 'I' init (JSON), 'R' ready (JSON), 'W' work, 'D' done, 'E' error (JSON code and
// message). What 'W' and 'D' carry is the command's (pipeline/prep_workers.h,
// pipeline/import_workers.h). A worker ends when its socket closes (the parent ended, or
// recycled it).
//
// A worker that has done `recycle_units` units of work (cards) is ended and replaced
// before its next work: SoftHSM 2.6 keeps every session object that was destroyed until
// the process finalizes (docs/PERFORMANCE.md), and a fresh process gives that back. A
// worker that dies is an interrupting error (kHsm: the run is resumable).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include <nlohmann/json.hpp>

#include "config/hsm_settings.h"
#include "engine/profile.h"
#include "engine/result.h"
#include "pipeline/hsm_session.h"

namespace persoflow::pipeline {

// --worker-recycle-cards' default. A worker's memory grows with the cards it did (SoftHSM
// keeps destroyed session objects): 25,000 bounds a strict prep worker near 40 MiB and an
// import worker near 20 MiB, and a start (a process, a login, the key lookups) every
// 25,000 cards cost nothing measurable (docs/PERFORMANCE.md).
inline constexpr std::uint64_t kDefaultWorkerRecycleCards = 25000;

struct WorkerPoolConfig {
  config::HsmSettings hsm;        // how each worker opens the HSM (the parent's settings)
  std::string command;            // the hidden subcommand: "prep-worker", "import-worker"
  std::string kind;               // in messages: "prep worker", "import worker"
  nlohmann::ordered_json init;    // the 'I' frame: what the worker opens
  std::uint64_t recycle_units = 0;  // 0: never recycle
};

class WorkerPool {
 public:
  // Starts `workers` processes and waits until each has opened what `init` names (an
  // error there names the worker and its reason).
  static Result<std::unique_ptr<WorkerPool>> start(WorkerPoolConfig config, std::size_t workers);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // One unit of work in the next idle worker (replaced first when it is due for
  // recycling): `request(seq)` gives the 'W' payload (seq numbers this worker's frames;
  // its answer must name it), and `answer` reads the 'D' payload. `reported` is the
  // worker's running total the command keeps per worker (prep: its HSM retries). An 'E'
  // answer is its error; a worker gone is kHsm naming it and `doing`. Blocks; thread-safe.
  using Request = std::function<Result<Bytes>(std::uint32_t seq)>;
  using Answer = std::function<Status(std::span<const std::uint8_t> done, std::uint32_t seq, std::uint64_t& reported)>;
  Status exchange(std::uint64_t units, const std::string& doing, const Request& request, const Answer& answer);

  std::size_t workers() const { return size_; }
  std::uint64_t processes_started() const;  // workers started, recycled ones included
  // Ends every worker (closing its socket) and waits for them; the destructor does it too.
  Status stop();

  struct Worker;

 private:
  explicit WorkerPool(WorkerPoolConfig config);
  Result<std::unique_ptr<Worker>> spawn();
  struct State;
  WorkerPoolConfig config_;
  std::size_t size_ = 0;
  std::unique_ptr<State> state_;
};

// A JSON frame payload (compact; invalid UTF-8 replaced), and one parsed back (kParse
// naming `peer` when it is not JSON).
Bytes json_bytes(const nlohmann::ordered_json& j);
Result<nlohmann::json> parse_worker_json(std::span<const std::uint8_t> bytes, const std::string& peer);

// A payload of u32 JSON length, the JSON, then bytes of the command's own (prep's work and
// answers): json_head() gives the first two, for the caller to append its bytes;
// split_json_frame() parses them back (kParse naming `peer`, the frame and the byte
// offset when the JSON runs past the payload) and gives the bytes after them.
Bytes json_head(const nlohmann::ordered_json& j);
struct JsonFrame {
  nlohmann::json json;
  std::span<const std::uint8_t> rest;
};
Result<JsonFrame> split_json_frame(std::span<const std::uint8_t> payload, const std::string& peer,
                                   const std::string& frame);

// True for a module that serializes calls within one process, so that worker processes
// are what scales it (SoftHSM).
bool module_serializes_calls(const config::HsmSettings& hsm);

// The worker's side, over the socket on `fd`: waits for 'I', calls `open` with its JSON
// (the worker opens the HSM with open_worker_hsm() there), answers 'R', then for each 'W'
// frame sends `handle`'s 'D' payload (head then body, sent as one frame), or 'E' with its
// error. Returns the process exit code when the parent closes the socket.
//   Test hooks (docs/formats/journal.md "Test-only hooks"): PERSOFLOW_TEST_WORKER_DIE_AT=N
//   makes the worker kill itself (SIGKILL) on its Nth work frame.
struct WorkerAnswer {
  Bytes head;
  Bytes body;
};
int serve_worker(int fd, const std::string& kind, const std::function<Status(const nlohmann::json& init)>& open,
                 const std::function<Result<WorkerAnswer>(std::span<const std::uint8_t> work)>& handle);

// The profile a worker works with: init's "profile" (an absolute path), which must still
// have init's "profile_sha256" (the run's): a profile edited during the run is refused
// (kIntegrity, naming both digests), as a resume over it is, instead of a recycled worker
// using other keys or rules than its parent.
Result<Profile> load_worker_profile(const nlohmann::json& init, const std::string& peer);

// Opens the HSM in a worker, retrying a start that collided with another process's login
// (see the comment in worker_process.cpp). PERSOFLOW_TEST_WORKER_TOKEN=LABEL (test hook)
// opens that token instead of the parent's.
Result<HsmSession> open_worker_hsm(const config::HsmSettings& hsm);

}  // namespace persoflow::pipeline
