// Result<T> and Error: errors are values at module boundaries (docs/architecture.md).
//
// Result<T> is shaped like std::expected<T, Error>: has_value(), value(), error().
// Error carries a code, a human message and, for HSM failures, the CK_RV and the
// name of the PKCS#11 function that returned it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace persoflow {

// What kind of failure this is; the command line maps these to exit codes
// (docs/cli.md).
enum class ErrorCode : std::uint8_t {
  kInvalidArgument,  // the caller passed something malformed (usage, flags, values)
  kParse,            // input bytes or text do not follow their format
  kNotFound,         // a named thing (file, token, key, record) does not exist
  kAlreadyExists,    // a named thing exists and must not be replaced
  kIo,               // the operating system failed a file operation
  kIntegrity,        // a check value, MAC, tag or KCV does not match
  kHsm,              // the PKCS#11 module returned an error
  kAuth,             // login failed (wrong PIN, locked PIN)
  kUnsupported,      // a valid request this build or module cannot serve
  kRejectLimit,      // more input records were rejected than the run allows
  kInternal,         // a bug: an invariant of persoflow itself broke
};

std::string_view error_code_name(ErrorCode code);

class Error {
 public:
  Error(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  // An HSM failure: `function` is the C_ function, `rv` its CK_RV. `code` is kHsm
  // unless the failure has a more precise meaning (kAuth for a wrong PIN).
  static Error hsm(unsigned long rv, std::string_view function, std::string message,
                   ErrorCode code = ErrorCode::kHsm);

  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::optional<unsigned long> ck_rv() const { return ck_rv_; }
  const std::string& function() const { return function_; }

  // Prepends "context: " to the message. Used while an error travels up.
  Error& add_context(std::string_view context);
  // The same on a copy, for `return with_context(result.error(), "...")`.
  friend Error with_context(Error error, std::string_view context) {
    error.add_context(context);
    return error;
  }

 private:
  ErrorCode code_;
  std::string message_;
  std::optional<unsigned long> ck_rv_;
  std::string function_;
};

template <typename T>
class [[nodiscard]] Result {
  static_assert(!std::is_same_v<std::remove_cvref_t<T>, Error>, "Result<Error> is ambiguous");

 public:
  Result(const T& value) : v_(std::in_place_index<0>, value) {}  // NOLINT(google-explicit-constructor)
  Result(T&& value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT
  template <typename U>
    requires(std::is_constructible_v<T, U&&> && !std::is_same_v<std::remove_cvref_t<U>, T> &&
             !std::is_same_v<std::remove_cvref_t<U>, Error> &&
             !std::is_same_v<std::remove_cvref_t<U>, Result<T>>)
  Result(U&& value) : v_(std::in_place_index<0>, T(std::forward<U>(value))) {}  // NOLINT

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)) {}  // NOLINT(google-explicit-constructor)
  bool has_value() const { return !error_.has_value(); }
  explicit operator bool() const { return has_value(); }
  void value() const {}
  const Error& error() const& { return *error_; }
  Error&& error() && { return std::move(*error_); }

 private:
  std::optional<Error> error_;
};

using Status = Result<void>;

inline Status ok_status() { return {}; }

}  // namespace persoflow

#define PF_CONCAT_INNER_(a, b) a##b
#define PF_CONCAT_(a, b) PF_CONCAT_INNER_(a, b)

// PF_TRY(expr): evaluate a Result/Status; on failure return its error.
#define PF_TRY(expr)                                      \
  do {                                                    \
    auto&& pf_try_result_ = (expr);                       \
    if (!pf_try_result_.has_value()) {                    \
      return std::move(pf_try_result_).error();           \
    }                                                     \
  } while (false)

// PF_TRY_CTX(expr, context): as PF_TRY, prefixing the error with context on failure only.
#define PF_TRY_CTX(expr, context)                                    \
  do {                                                               \
    auto&& pf_try_result_ = (expr);                                  \
    if (!pf_try_result_.has_value()) {                               \
      ::persoflow::Error pf_err_ = std::move(pf_try_result_).error(); \
      pf_err_.add_context(context);                                  \
      return pf_err_;                                                \
    }                                                                \
  } while (false)

#define PF_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.has_value()) {                         \
    return std::move(tmp).error();                \
  }                                               \
  lhs = std::move(tmp).value()

// PF_ASSIGN_OR_RETURN(auto x, expr): bind the value of a Result or return its error.
#define PF_ASSIGN_OR_RETURN(lhs, expr) \
  PF_ASSIGN_OR_RETURN_IMPL_(PF_CONCAT_(pf_result_, __LINE__), lhs, expr)
