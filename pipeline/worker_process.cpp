#include "pipeline/worker_process.h"

#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "config/profile_parser.h"
#include "engine/hex.h"
#include "formats/big_endian_codec.h"
#include "pipeline/exit_codes.h"

extern char** environ;

namespace persoflow::pipeline {

Bytes json_bytes(const nlohmann::ordered_json& j) {
  const std::string text = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  return Bytes(text.begin(), text.end());
}

Result<nlohmann::json> parse_worker_json(std::span<const std::uint8_t> bytes, const std::string& peer) {
  auto j = nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr, false);
  if (j.is_discarded()) return Error(ErrorCode::kParse, peer + ": a frame that is not JSON");
  return j;
}

Bytes json_head(const nlohmann::ordered_json& j) {
  const Bytes text = json_bytes(j);
  formats::ByteWriter head;
  head.u32(static_cast<std::uint32_t>(text.size()));
  head.bytes(text);
  return head.take();
}

Result<JsonFrame> split_json_frame(std::span<const std::uint8_t> payload, const std::string& peer,
                                   const std::string& frame) {
  formats::ByteReader reader(payload, 0, peer + ": " + frame);
  PF_ASSIGN_OR_RETURN(const std::uint32_t length, reader.u32("its JSON length"));
  PF_ASSIGN_OR_RETURN(const auto text, reader.bytes(length, "its JSON"));
  PF_ASSIGN_OR_RETURN(nlohmann::json j, parse_worker_json(text, peer));
  return JsonFrame{std::move(j), payload.subspan(reader.position())};
}

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
  return send_frame(fd, type, json_bytes(j), {}, peer);
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

// "a prep worker", "an import worker".
std::string a(const std::string& kind) {
  return (kind.empty() || std::string_view("aeiou").find(kind[0]) == std::string_view::npos ? "a " : "an ") + kind;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "ended (wait status " + std::to_string(status) + ")";
}

}  // namespace

struct WorkerPool::Worker {
  pid_t pid = -1;
  int fd = -1;
  std::string kind;
  std::uint64_t units = 0;
  std::uint32_t seq = 0;
  std::uint64_t reported = 0;  // the command's running total, as the worker last reported it
  std::string name() const { return kind + " (pid " + std::to_string(pid) + ")"; }

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
      return Error(ErrorCode::kHsm, a(kind) + " ended " + doing);
    }
    const std::string who = name();
    const auto status = reap();
    return Error(ErrorCode::kHsm, who + " " + (status ? describe_status(*status) : std::string("ended")) + " " + doing);
  }

  ~Worker() { (void)end(); }
};

struct WorkerPool::State {
  std::mutex mu;
  std::condition_variable idle_cv;
  std::vector<std::unique_ptr<Worker>> idle;
  std::uint64_t started = 0;
};

bool module_serializes_calls(const config::HsmSettings& hsm) {
  return std::filesystem::path(hsm.module).filename().string().find("softhsm") != std::string::npos;
}

Result<std::unique_ptr<WorkerPool::Worker>> WorkerPool::spawn() {
  // The worker runs this very executable: /proc/self/exe names the running image even when
  // its file was replaced or removed since (a package upgraded during a long run), so a
  // recycled worker is the parent's version, and speaks its wire. The resolved path is
  // only argv[0], for ps.
  const std::string exe = self_exe();
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return io_error("creating " + a(config_.kind) + "'s socket");
  std::vector<std::string> args = {exe.empty() ? std::string("persoflow") : exe, "--module", config_.hsm.module};
  if (!config_.hsm.token.empty()) args.insert(args.end(), {"--token", config_.hsm.token});
  args.insert(args.end(), {config_.hsm.pin.kind == config::PinSource::Kind::kEnv ? "--pin-env" : "--pin-file",
                           config_.hsm.pin.name, "--max-sessions", std::to_string(config_.hsm.max_sessions),
                           config_.command, "--fd", "3"});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // fd 3 in the worker is its end of the socket (dup2 clears close-on-exec; the parent's
  // other sockets stay closed in it, so each worker sees its own end-of-stream).
  posix_spawn_file_actions_adddup2(&actions, sv[1], 3);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(sv[1]);
  if (rc != 0) {
    ::close(sv[0]);
    errno = rc;
    return io_error("starting " + a(config_.kind) + " (/proc/self/exe: " + exe + ")");
  }
  auto w = std::make_unique<Worker>();
  w->pid = pid;
  w->fd = sv[0];
  w->kind = config_.kind;
  {
    std::lock_guard lock(state_->mu);
    ++state_->started;
  }
  if (auto s = send_json(w->fd, 'I', config_.init, w->name()); !s) return w->died("before it was initialized");
  return w;
}

namespace {

// Waits for a new worker's 'R' (or its error).
Status await_ready(WorkerPool::Worker& w) {
  const std::string who = w.name();
  PF_ASSIGN_OR_RETURN(auto frame, recv_frame(w.fd, who));
  if (!frame) return w.died("while starting");
  PF_ASSIGN_OR_RETURN(const nlohmann::json j, parse_worker_json(frame->payload, who));
  if (frame->type == 'E') return with_context(error_from_json(j, who), who + " could not start");
  if (frame->type != 'R') return Error(ErrorCode::kInternal, who + ": an unexpected frame while starting");
  return ok_status();
}

}  // namespace

Result<std::unique_ptr<WorkerPool>> WorkerPool::start(WorkerPoolConfig config, std::size_t workers) {
  std::unique_ptr<WorkerPool> pool(new WorkerPool(std::move(config)));
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

WorkerPool::WorkerPool(WorkerPoolConfig config) : config_(std::move(config)), state_(std::make_unique<State>()) {}

WorkerPool::~WorkerPool() { (void)stop(); }

Status WorkerPool::stop() {
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

std::uint64_t WorkerPool::processes_started() const {
  std::lock_guard lock(state_->mu);
  return state_->started;
}

Status WorkerPool::exchange(std::uint64_t units, const std::string& doing, const Request& request,
                            const Answer& answer) {
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
  if (w->fd < 0 || (config_.recycle_units != 0 && w->units >= config_.recycle_units)) {
    // Recycled: a fresh process gives back what the module kept of the work before.
    if (auto s = w->end(); !s) {
      give_back(std::move(w));
      return s;
    }
    auto fresh = spawn();
    if (!fresh) {
      give_back(std::move(w));
      return fresh.error();
    }
    if (auto s = await_ready(**fresh); !s) {
      give_back(std::move(*fresh));
      return s;
    }
    w = std::move(*fresh);
  }
  const std::string who = w->name();
  const std::uint32_t seq = w->seq++;
  auto payload = request(seq);
  if (!payload) {
    give_back(std::move(w));
    return payload.error();
  }
  if (auto s = send_frame(w->fd, 'W', *payload, {}, who); !s) {
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
  auto result = [&]() -> Status {
    const Frame& f = **frame;
    if (f.type == 'E') {
      PF_ASSIGN_OR_RETURN(const nlohmann::json j, parse_worker_json(f.payload, who));
      return error_from_json(j, who);
    }
    if (f.type != 'D') return Error(ErrorCode::kInternal, who + ": an unexpected frame " + doing);
    return answer(f.payload, seq, w->reported);
  }();
  if (result) w->units += units;
  give_back(std::move(w));
  return result;
}

Result<Profile> load_worker_profile(const nlohmann::json& init, const std::string& peer) {
  std::string path, want;
  try {
    path = init.at("profile").get<std::string>();
    want = init.at("profile_sha256").get<std::string>();
  } catch (const nlohmann::json::exception&) {
    return Error(ErrorCode::kInternal, peer + ": a malformed init frame");
  }
  PF_ASSIGN_OR_RETURN(Profile profile, config::load_profile(path));
  const std::string got = to_hex(profile.sha256);
  if (got != want) {
    return Error(ErrorCode::kIntegrity, path + ": the profile changed since the run started (SHA-256 " + got +
                                            ", the run's " + want + "): a worker uses the run's profile or none");
  }
  return profile;
}

Result<HsmSession> open_worker_hsm(const config::HsmSettings& given) {
  config::HsmSettings hsm = given;
  if (const char* token = std::getenv("PERSOFLOW_TEST_WORKER_TOKEN")) hsm.token = token;
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
  return opened;
}

int serve_worker(int fd, const std::string& kind, const std::function<Status(const nlohmann::json& init)>& open,
                 const std::function<Result<WorkerAnswer>(std::span<const std::uint8_t> work)>& handle) {
  const std::uint64_t die_at = [] {
    const char* v = std::getenv("PERSOFLOW_TEST_WORKER_DIE_AT");
    return v != nullptr ? std::strtoull(v, nullptr, 10) : 0;
  }();
  std::uint64_t frames = 0;
  const std::string peer = kind + " " + std::to_string(::getpid()) + ": its parent";
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
  auto init = parse_worker_json((*init_frame)->payload, peer);
  if (!init) return send_error(init.error());
  if (auto s = open(*init); !s) return send_error(s.error());
  if (auto s = send_json(fd, 'R', {{"pid", ::getpid()}}, peer); !s) return exit_code_for(s.error());

  for (;;) {
    auto frame = recv_frame(fd, peer);
    if (!frame) return exit_code_for(frame.error());
    if (!*frame) return kExitOk;  // the parent is done with this worker
    if (++frames == die_at) ::raise(SIGKILL);
    auto answer = [&]() -> Status {
      if ((*frame)->type != 'W') return Error(ErrorCode::kInternal, peer + ": an unexpected frame");
      PF_ASSIGN_OR_RETURN(WorkerAnswer a, handle((*frame)->payload));
      return send_frame(fd, 'D', a.head, a.body, peer);
    }();
    if (!answer) {
      // The parent stops the run on any error; the worker waits to be closed.
      if (auto s = send_json(fd, 'E', error_json(answer.error()), peer); !s) return exit_code_for(s.error());
    }
  }
}

}  // namespace persoflow::pipeline
