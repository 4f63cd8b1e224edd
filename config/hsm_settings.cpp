#include "config/hsm_settings.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace persoflow::config {

std::optional<std::string> process_env(std::string_view name) {
  const char* v = std::getenv(std::string(name).c_str());
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

Result<HsmSettings> resolve_hsm_settings(const HsmFlags& flags, const ConfigFile* file,
                                         const EnvLookup& env) {
  HsmSettings s;
  auto from_file = [&](std::string_view key) -> std::optional<std::string> {
    return file != nullptr ? file->get("hsm", key) : std::nullopt;
  };
  auto pick = [&](const std::optional<std::string>& flag, std::string_view env_name,
                  std::string_view key) -> std::optional<std::string> {
    if (flag) return flag;
    if (auto e = env(env_name); e && !e->empty()) return e;
    return from_file(key);
  };

  s.module = pick(flags.module, "PERSOFLOW_PKCS11_MODULE", "module").value_or(std::string(kDefaultModule));
  if (s.module.empty()) {
    return Error(ErrorCode::kInvalidArgument, "the PKCS#11 module path is empty (--module, "
                                              "PERSOFLOW_PKCS11_MODULE or module in [hsm])");
  }
  auto token = pick(flags.token, "PERSOFLOW_TOKEN", "token");
  if (!token || token->empty()) {
    return Error(ErrorCode::kInvalidArgument,
                 "no token selected: give --token LABEL, set PERSOFLOW_TOKEN, or set token in the "
                 "[hsm] section of the configuration file");
  }
  s.token = *token;

  if (flags.pin_env && flags.pin_file) {
    return Error(ErrorCode::kInvalidArgument, "give either --pin-env or --pin-file, not both");
  }
  if (flags.pin_env && flags.pin_env->empty()) {
    return Error(ErrorCode::kInvalidArgument, "--pin-env needs a variable name");
  }
  if (flags.pin_file && flags.pin_file->empty()) {
    return Error(ErrorCode::kInvalidArgument, "--pin-file needs a file name");
  }
  if (flags.pin_env) {
    s.pin = {PinSource::Kind::kEnv, *flags.pin_env, "--pin-env"};
  } else if (flags.pin_file) {
    s.pin = {PinSource::Kind::kFile, *flags.pin_file, "--pin-file"};
  } else if (auto pin_var = env(kDefaultPinEnv); pin_var && !pin_var->empty()) {
    // The environment comes before the configuration file, as for module and token.
    s.pin = {PinSource::Kind::kEnv, std::string(kDefaultPinEnv), "environment"};
  } else if (auto f = from_file("pin_file"); f && from_file("pin_env")) {
    return Error(ErrorCode::kInvalidArgument,
                 file->where("hsm", "pin_file") + ": give either pin_env or pin_file, not both");
  } else if (f) {
    s.pin = {PinSource::Kind::kFile, *f, file->where("hsm", "pin_file")};
  } else if (auto e = from_file("pin_env")) {
    s.pin = {PinSource::Kind::kEnv, *e, file->where("hsm", "pin_env")};
  } else {
    s.pin = {PinSource::Kind::kEnv, std::string(kDefaultPinEnv), "default"};
  }

  if (flags.max_sessions) {
    s.max_sessions = *flags.max_sessions;
  } else if (auto m = from_file("max_sessions")) {
    char* end = nullptr;
    errno = 0;
    const unsigned long v = std::strtoul(m->c_str(), &end, 10);
    if (m->empty() || *end != '\0' || errno != 0 || v == 0 || v > 1024) {
      return Error(ErrorCode::kParse, file->where("hsm", "max_sessions") +
                                          ": max_sessions must be a whole number from 1 to 1024");
    }
    s.max_sessions = v;
  }
  if (s.max_sessions == 0) {
    return Error(ErrorCode::kInvalidArgument, "max_sessions must be at least 1");
  }
  return s;
}

Result<SecureBytes> read_pin(const PinSource& source, const EnvLookup& env) {
  if (source.kind == PinSource::Kind::kEnv) {
    auto v = env(source.name);
    if (!v || v->empty()) {
      return Error(ErrorCode::kInvalidArgument,
                   "no PIN: environment variable " + source.name + " is not set (PIN source from " +
                       source.origin + "; use --pin-env NAME or --pin-file FILE)");
    }
    SecureBytes pin(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(v->data()), v->size()));
    return pin;
  }
  // O_NONBLOCK: opening a FIFO must not wait for a writer before the regular-file check.
  const int fd = open(source.name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    return Error(errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                 "cannot open PIN file " + source.name + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return Error(ErrorCode::kInvalidArgument, "PIN file " + source.name + " is not a regular file");
  }
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    close(fd);
    return Error(ErrorCode::kInvalidArgument,
                 "PIN file " + source.name + " is accessible by group or others (mode " +
                     std::to_string((st.st_mode >> 6) & 7) + std::to_string((st.st_mode >> 3) & 7) +
                     std::to_string(st.st_mode & 7) + "); run chmod 600 on it");
  }
  SecureBytes pin(256);
  auto buf = pin.reveal_mutable();
  std::size_t n = 0;
  for (;;) {
    const ssize_t r = read(fd, buf.data() + n, buf.size() - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      close(fd);
      return Error(ErrorCode::kIo, "cannot read PIN file " + source.name + ": " + std::strerror(errno));
    }
    if (r == 0) break;
    n += static_cast<std::size_t>(r);
    if (n == buf.size()) {
      close(fd);
      return Error(ErrorCode::kInvalidArgument, "PIN file " + source.name + " is longer than 255 bytes");
    }
  }
  close(fd);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) --n;
  for (std::size_t i = 0; i < n; ++i) {
    if (buf[i] == '\n') {
      return Error(ErrorCode::kInvalidArgument, "PIN file " + source.name + " has more than one line");
    }
  }
  if (n == 0) return Error(ErrorCode::kInvalidArgument, "PIN file " + source.name + " is empty");
  SecureBytes out(std::span<const std::uint8_t>(buf.data(), n));
  return out;
}

}  // namespace persoflow::config
