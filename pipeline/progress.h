// A one-line progress display for long runs, on stderr and only when stderr is a
// terminal (silent in cron jobs, pipes and CI logs): "import: 120,000 cards, 98,000/s".
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace persoflow::pipeline {

class ProgressLine {
 public:
  // `enabled` false, or stderr not a terminal: every call does nothing.
  ProgressLine(std::string label, bool enabled = true);
  ~ProgressLine();  // clears the line
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  // Redraws at most a few times a second.
  void update(std::uint64_t done, std::uint64_t bytes_done = 0, std::uint64_t bytes_total = 0);

 private:
  std::string label_;
  bool active_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_;
  bool drawn_ = false;
};

}  // namespace persoflow::pipeline
