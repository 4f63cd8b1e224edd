#include "pipeline/prompter.h"

#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>

namespace persoflow::pipeline {
namespace {

void show(std::string_view prompt) {
  std::fwrite(prompt.data(), 1, prompt.size(), stderr);
  std::fflush(stderr);
}

// Reads one line from fd 0 byte by byte into `out` (no stdio buffer keeps a copy).
bool read_raw_line(SecureBytes& out) {
  out.resize(0);
  SecureBytes buf(1024);
  std::size_t n = 0;
  auto b = buf.reveal_mutable();
  for (;;) {
    char c = 0;
    const ssize_t r = read(0, &c, 1);
    if (r <= 0) {
      if (n == 0) return false;
      break;
    }
    if (c == '\n') break;
    if (c == '\r') continue;
    if (n < b.size()) b[n++] = static_cast<std::uint8_t>(c);
  }
  out = SecureBytes(b.subspan(0, n));
  return true;
}

// While echo is off, a Ctrl-C (or SIGTERM/SIGHUP) must not leave the operator's
// terminal without echo: the handler restores it, then dies of the same signal.
termios g_saved_terminal{};
volatile std::sig_atomic_t g_terminal_saved = 0;

void restore_terminal_and_reraise(int sig) {
  if (g_terminal_saved != 0) tcsetattr(0, TCSANOW, &g_saved_terminal);
  signal(sig, SIG_DFL);
  raise(sig);
}

class EchoOffGuard {
 public:
  explicit EchoOffGuard(const termios& saved) {
    g_saved_terminal = saved;
    g_terminal_saved = 1;
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) {
      struct sigaction sa {};
      sa.sa_handler = restore_terminal_and_reraise;
      sigemptyset(&sa.sa_mask);
      sigaction(sig, &sa, &old_[index(sig)]);
    }
  }
  ~EchoOffGuard() {
    tcsetattr(0, TCSANOW, &g_saved_terminal);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaction(sig, &old_[index(sig)], nullptr);
    g_terminal_saved = 0;
  }
  EchoOffGuard(const EchoOffGuard&) = delete;
  EchoOffGuard& operator=(const EchoOffGuard&) = delete;

 private:
  static int index(int sig) { return sig == SIGINT ? 0 : sig == SIGTERM ? 1 : sig == SIGHUP ? 2 : 3; }
  struct sigaction old_[4] {};
};

}  // namespace

std::optional<SecureBytes> TerminalPrompter::read_secret(std::string_view prompt) {
  // Echo goes off before the prompt appears, so nothing typed after it is echoed;
  // TCSANOW (not TCSAFLUSH) keeps what the operator already typed.
  const bool tty = isatty(0) != 0;
  termios old_attr{};
  const bool changed = tty && tcgetattr(0, &old_attr) == 0;
  std::optional<EchoOffGuard> guard;
  if (changed) {
    guard.emplace(old_attr);
    termios no_echo = old_attr;
    no_echo.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    no_echo.c_lflag |= ECHONL;
    tcsetattr(0, TCSANOW, &no_echo);
  }
  show(prompt);
  SecureBytes line;
  const bool got = read_raw_line(line);
  guard.reset();
  if (!tty) show("\n");
  if (!got) return std::nullopt;
  return line;
}

std::optional<std::string> TerminalPrompter::read_line(std::string_view prompt) {
  show(prompt);
  SecureBytes line;
  if (!read_raw_line(line)) return std::nullopt;
  if (isatty(0) == 0) show("\n");
  auto b = line.reveal();
  return std::string(b.begin(), b.end());
}

}  // namespace persoflow::pipeline
