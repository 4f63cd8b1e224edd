// Asking an operator for input: secret entries without echo when stdin is a
// terminal; plain lines otherwise (so a ceremony can be scripted and tested).
// Prompts go to stderr, so stdout carries only results.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "engine/secure_bytes.h"

namespace persoflow::pipeline {

class Prompter {
 public:
  virtual ~Prompter() = default;
  // nullopt at end of input.
  virtual std::optional<SecureBytes> read_secret(std::string_view prompt) = 0;
  virtual std::optional<std::string> read_line(std::string_view prompt) = 0;
};

class TerminalPrompter : public Prompter {
 public:
  std::optional<SecureBytes> read_secret(std::string_view prompt) override;
  std::optional<std::string> read_line(std::string_view prompt) override;
};

}  // namespace persoflow::pipeline
