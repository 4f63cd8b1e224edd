#include "engine/secure_bytes.h"

#include <gtest/gtest.h>

#include <sys/mman.h>
#include <sys/resource.h>

#include <concepts>
#include <fstream>
#include <set>
#include <cstring>
#include <ostream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "engine/hex.h"

namespace persoflow {
namespace {

// What secure_bytes.h promises is deliberately missing; these fail to compile if it appears.
template <typename T>
concept Streamable = requires(std::ostream& os, const T& t) {
  os << t;
};
static_assert(!Streamable<SecureBytes>);
static_assert(!std::equality_comparable<SecureBytes>);
static_assert(!std::is_convertible_v<SecureBytes, std::span<const std::uint8_t>>);
static_assert(!std::is_convertible_v<SecureBytes, Bytes>);
static_assert(!std::is_convertible_v<SecureBytes, std::string>);
static_assert(!std::is_convertible_v<Bytes, SecureBytes>);  // the span constructor is explicit
static_assert(std::is_nothrow_move_constructible_v<SecureBytes>);

SecureBytes secret(std::string_view hex) {
  auto r = secure_from_hex(hex);
  if (!r.has_value()) {
    ADD_FAILURE() << "bad test hex: " << r.error().message();
    return SecureBytes();
  }
  return std::move(r).value();
}

TEST(SecureBytesTest, DefaultIsEmpty) {
  SecureBytes s;
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.size(), 0u);
  EXPECT_TRUE(s.reveal().empty());
}

TEST(SecureBytesTest, SizedConstructorZeroFills) {
  SecureBytes s(24);
  ASSERT_EQ(s.size(), 24u);
  EXPECT_EQ(to_hex(s.reveal()), std::string(48, '0'));
}

TEST(SecureBytesTest, SpanConstructorCopies) {
  Bytes source = {0x01, 0x02, 0x03};
  SecureBytes s(source);
  source[0] = 0xFF;
  EXPECT_EQ(to_hex(s.reveal()), "010203");
}

TEST(SecureBytesTest, RevealMutableWritesAreSeen) {
  SecureBytes s(3);
  auto w = s.reveal_mutable();
  w[0] = 0xAA;
  w[2] = 0x55;
  EXPECT_EQ(to_hex(s.reveal()), "AA0055");
}

TEST(SecureBytesTest, AppendAndResize) {
  SecureBytes s = secret("0102");
  const Bytes more = {0x03, 0x04};
  s.append(more);
  EXPECT_EQ(to_hex(s.reveal()), "01020304");
  s.resize(6);
  EXPECT_EQ(to_hex(s.reveal()), "010203040000");
  s.resize(1);
  EXPECT_EQ(to_hex(s.reveal()), "01");
}

TEST(SecureBytesTest, EqualsComparesContent) {
  const SecureBytes a = secret("404142434445464748494A4B4C4D4E4F");
  const SecureBytes b = secret("404142434445464748494A4B4C4D4E4F");
  EXPECT_TRUE(a.equals(b));
  EXPECT_TRUE(b.equals(a));
  EXPECT_TRUE(a.equals(a));
}

TEST(SecureBytesTest, EqualsSeesADifferenceInAnyByte) {
  const SecureBytes a = secret("404142434445464748494A4B4C4D4E4F");
  for (std::size_t i = 0; i < a.size(); ++i) {
    SecureBytes b = a;
    b.reveal_mutable()[i] ^= 0x01;  // a single bit
    EXPECT_FALSE(a.equals(b)) << "difference at byte " << i;
  }
}

TEST(SecureBytesTest, EqualsIsFalseForDifferentSizes) {
  const SecureBytes a = secret("01020304");
  const SecureBytes prefix = secret("010203");
  EXPECT_FALSE(a.equals(prefix));
  EXPECT_FALSE(prefix.equals(a));
  EXPECT_FALSE(a.equals(SecureBytes()));
}

TEST(SecureBytesTest, EmptyValuesAreEqual) { EXPECT_TRUE(SecureBytes().equals(SecureBytes())); }

TEST(ConstantTimeEqualTest, ComparesPublicRanges) {
  const Bytes mac = {0xBE, 0xF4, 0x93, 0x10, 0x97, 0x76, 0x17, 0xBA};
  Bytes same = mac;
  EXPECT_TRUE(constant_time_equal(mac, same));
  same[7] = 0xBB;
  EXPECT_FALSE(constant_time_equal(mac, same));
  same = mac;
  same[0] = 0x00;
  EXPECT_FALSE(constant_time_equal(mac, same));
}

TEST(ConstantTimeEqualTest, SizesMustMatch) {
  const Bytes a = {0x01, 0x02, 0x03};
  const Bytes b = {0x01, 0x02};
  EXPECT_FALSE(constant_time_equal(a, b));
  EXPECT_FALSE(constant_time_equal(b, a));
  EXPECT_FALSE(constant_time_equal(a, Bytes{}));
  EXPECT_TRUE(constant_time_equal(Bytes{}, Bytes{}));
  // Equal-length views of equal bytes are equal, wherever they live.
  EXPECT_TRUE(constant_time_equal(std::span(a).first(2), b));
}

TEST(SecureBytesTest, WipeEmpties) {
  SecureBytes s = secret("0102030405060708");
  s.wipe();
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.size(), 0u);
  s.wipe();  // idempotent
  EXPECT_TRUE(s.empty());
}

TEST(SecureBytesTest, UsableAfterWipe) {
  SecureBytes s = secret("0102");
  s.wipe();
  const Bytes more = {0x0A, 0x0B};
  s.append(more);
  EXPECT_EQ(to_hex(s.reveal()), "0A0B");
}

TEST(SecureBytesTest, WipeZeroesTheStorage) {
  SecureBytes s = secret("FFEEDDCCBBAA99887766554433221100");
  const std::uint8_t* storage = s.reveal().data();
  const std::size_t n = s.size();
  s.wipe();
  // wipe() clears without releasing the allocation (std::vector::clear keeps the capacity),
  // so the old bytes can still be inspected; a wipe() that only cleared would leave them.
  ASSERT_EQ(s.reveal().data(), storage) << "wipe() now releases storage; adapt this test";
  std::uint8_t after[16];
  std::memcpy(after, storage, n);
  EXPECT_EQ(to_hex(after), std::string(32, '0'));
}

TEST(SecureWipeTest, ZeroesABuffer) {
  std::uint8_t buffer[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  detail::secure_wipe(buffer + 2, 4);
  EXPECT_EQ(to_hex(buffer), "0102000000000708");
}

TEST(SecureWipeTest, NullAndEmptyAreNoOps) {
  detail::secure_wipe(nullptr, 16);
  std::uint8_t b = 0x42;
  detail::secure_wipe(&b, 0);
  EXPECT_EQ(b, 0x42);
}

TEST(SecureBytesTest, CopyIsIndependent) {
  const SecureBytes a = secret("0102");
  SecureBytes b = a;
  b.reveal_mutable()[0] = 0xFF;
  EXPECT_EQ(to_hex(a.reveal()), "0102");
  EXPECT_EQ(to_hex(b.reveal()), "FF02");
  SecureBytes c;
  c = a;
  EXPECT_TRUE(c.equals(a));
}

TEST(SecureBytesTest, MoveTransfersContent) {
  SecureBytes a = secret("A1A2A3");
  SecureBytes b(std::move(a));
  EXPECT_EQ(to_hex(b.reveal()), "A1A2A3");
  SecureBytes c = secret("0000000000");
  c = std::move(b);
  EXPECT_EQ(to_hex(c.reveal()), "A1A2A3");
}

TEST(SecureBytesTest, SelfMoveAssignKeepsContent) {
  SecureBytes a = secret("A1A2A3");
  SecureBytes& alias = a;
  a = std::move(alias);
  EXPECT_EQ(to_hex(a.reveal()), "A1A2A3");
}

TEST(SecureBytesTest, XorWithCombinesKeyComponents) {
  SecureBytes key = secret("0123456789ABCDEF");
  const Bytes component = {0xFF, 0x00, 0xFF, 0x00, 0x0F, 0xF0, 0x00, 0x01};
  key.xor_with(component);
  EXPECT_EQ(to_hex(key.reveal()), "FE23BA67865BCDEE");
  key.xor_with(component);
  EXPECT_EQ(to_hex(key.reveal()), "0123456789ABCDEF");
}

TEST(SecureBytesTest, XorWithSizeMismatchIsAProgrammingError) {
  SecureBytes key = secret("01020304");
  const Bytes shorter = {0x01, 0x02};
  EXPECT_THROW(key.xor_with(shorter), std::logic_error);
  EXPECT_EQ(to_hex(key.reveal()), "01020304");
}

TEST(ZeroizingAllocatorTest, AllInstancesCompareEqual) {
  detail::ZeroizingAllocator<std::uint8_t> a;
  detail::ZeroizingAllocator<int> b;
  EXPECT_TRUE(a == b);
  std::uint8_t* p = a.allocate(32);
  ASSERT_NE(p, nullptr);
  std::memset(p, 0xAB, 32);
  a.deallocate(p, 32);
}

// Secret bytes come from the locked arena: pages locked in RAM where RLIMIT_MEMLOCK allows
// (the kernel's own view, /proc/self/status VmLck, must count them) and reused through the
// free lists; blocks larger than the arena's classes come from the heap.
TEST(LockedArenaTest, SecretsLiveInLockedReusedPages) {
  SecureBytes key(32);
  key.reveal_mutable()[0] = 0x5A;
  ASSERT_TRUE(detail::locked_arena_owns(key.reveal().data()));
  const auto stats = detail::locked_arena_stats();
  EXPECT_GE(stats.chunks, 1u);
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_MEMLOCK, &limit), 0);
  if (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= 1024 * 1024) {
    EXPECT_GE(stats.locked_chunks, 1u) << "RLIMIT_MEMLOCK allows locking, yet no chunk is locked";
    std::ifstream status("/proc/self/status");
    std::string line;
    long locked_kb = -1;
    while (std::getline(status, line)) {
      if (line.rfind("VmLck:", 0) == 0) locked_kb = std::stol(line.substr(6));
    }
    EXPECT_GE(locked_kb, 256) << "the kernel counts the locked chunk";
  }
  // A block given back is the next one of its class handed out.
  const void* first = nullptr;
  {
    SecureBytes a(100);
    first = a.reveal().data();
  }
  SecureBytes b(100);
  EXPECT_EQ(static_cast<const void*>(b.reveal().data()), first);
  // Larger than the largest class: the ordinary heap, still a working buffer.
  const std::size_t heap_before = detail::locked_arena_stats().heap_blocks;
  SecureBytes big(5000);
  EXPECT_FALSE(detail::locked_arena_owns(big.reveal().data()));
  EXPECT_EQ(detail::locked_arena_stats().heap_blocks, heap_before + 1);
  big.reveal_mutable()[4999] = 1;
  EXPECT_EQ(big.reveal()[4999], 1);
  // Many live secrets of mixed sizes: distinct, within the arena.
  std::vector<SecureBytes> many;
  std::set<const void*> seen;
  for (std::size_t k = 1; k <= 2000; ++k) {
    many.emplace_back(k % 300 + 1);
    EXPECT_TRUE(seen.insert(many.back().reveal().data()).second);
  }
}

}  // namespace
}  // namespace persoflow
