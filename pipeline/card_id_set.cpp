#include "pipeline/card_id_set.h"

namespace persoflow::pipeline {

std::uint64_t CardIdSet::hash(std::string_view id) {
  // FNV-1a then a splitmix64 finalizer: fast, well mixed, never 0 (0 marks empty slots).
  std::uint64_t h = 0xCBF29CE484222325ULL;
  for (unsigned char c : id) {
    h ^= c;
    h *= 0x100000001B3ULL;
  }
  h ^= h >> 30;
  h *= 0xBF58476D1CE4E5B9ULL;
  h ^= h >> 27;
  h *= 0x94D049BB133111EBULL;
  h ^= h >> 31;
  return h == 0 ? 1 : h;
}

void CardIdSet::grow() {
  std::vector<std::uint64_t> old = std::move(slots_);
  slots_.assign(old.size() * 2, 0);
  const std::size_t mask = slots_.size() - 1;
  for (std::uint64_t h : old) {
    if (h == 0) continue;
    std::size_t i = h & mask;
    while (slots_[i] != 0) i = (i + 1) & mask;
    slots_[i] = h;
  }
}

bool CardIdSet::insert(std::string_view id) {
  if (2 * (size_ + 1) > slots_.size()) grow();  // load factor at most 1/2
  const std::uint64_t h = hash(id);
  const std::size_t mask = slots_.size() - 1;
  std::size_t i = h & mask;
  while (slots_[i] != 0) {
    if (slots_[i] == h) return false;
    i = (i + 1) & mask;
  }
  slots_[i] = h;
  ++size_;
  return true;
}

}  // namespace persoflow::pipeline
