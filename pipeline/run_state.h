// Shared state of one run across the nodes of a flow graph: the first fatal error
// (an exception escaping a node would cancel the whole graph, so nodes report
// failures here and pass empty work along) and the counters of the run report.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>

#include "engine/result.h"

namespace persoflow::pipeline {

class RunState {
 public:
  void fail(Error error) {
    std::lock_guard lock(mu_);
    if (!first_) first_ = std::move(error);
    failed_.store(true, std::memory_order_release);
  }
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  std::optional<Error> error() const {
    std::lock_guard lock(mu_);
    return first_;
  }

 private:
  mutable std::mutex mu_;
  std::optional<Error> first_;
  std::atomic<bool> failed_{false};
};

}  // namespace persoflow::pipeline
