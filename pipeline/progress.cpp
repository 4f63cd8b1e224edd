#include "pipeline/progress.h"

#include <unistd.h>

#include <cstdio>

namespace persoflow::pipeline {

ProgressLine::ProgressLine(std::string label, bool enabled)
    : label_(std::move(label)),
      active_(enabled && isatty(2) != 0),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

ProgressLine::~ProgressLine() {
  if (active_ && drawn_) std::fprintf(stderr, "\r\033[K");
}

void ProgressLine::update(std::uint64_t done, std::uint64_t bytes_done, std::uint64_t bytes_total) {
  if (!active_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_ < std::chrono::milliseconds(250)) return;
  last_ = now;
  drawn_ = true;
  const double secs = std::chrono::duration<double>(now - start_).count();
  const double rate = secs > 0 ? static_cast<double>(done) / secs : 0;
  if (bytes_total > 0 && bytes_done > 0 && bytes_done <= bytes_total) {
    const double frac = static_cast<double>(bytes_done) / static_cast<double>(bytes_total);
    const double eta = frac > 0 ? secs * (1 - frac) / frac : 0;
    std::fprintf(stderr, "\r\033[K%s: %llu cards, %.0f cards/s, %.0f%%, ETA %.0f s", label_.c_str(),
                 static_cast<unsigned long long>(done), rate, 100 * frac, eta);
  } else {
    std::fprintf(stderr, "\r\033[K%s: %llu cards, %.0f cards/s", label_.c_str(),
                 static_cast<unsigned long long>(done), rate);
  }
  std::fflush(stderr);
}

}  // namespace persoflow::pipeline
