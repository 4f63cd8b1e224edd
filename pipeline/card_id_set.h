// The card ids seen so far in one import, to reject duplicates: 64-bit hashes in an
// open-addressing table at most half full (16 to 32 bytes per card, 48 while it grows;
// about 16-32 MiB per million cards),
// not the ids themselves. Two different ids with the same 64-bit hash would make the
// second look like a duplicate (probability about n^2 / 2^65: 3e-8 for a million
// cards); it would then be rejected with its reason, never silently dropped.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace persoflow::pipeline {

class CardIdSet {
 public:
  // True when the id was not in the set (and is now).
  bool insert(std::string_view id);
  std::size_t size() const { return size_; }

 private:
  static std::uint64_t hash(std::string_view id);
  void grow();

  std::vector<std::uint64_t> slots_ = std::vector<std::uint64_t>(1024, 0);  // 0 = empty
  std::size_t size_ = 0;
};

}  // namespace persoflow::pipeline
