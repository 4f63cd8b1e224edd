#include "formats/byte_source.h"

#include <fcntl.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "tests/support/temp_dir.h"
#include "tests/unit/formats/cms_test_support.h"

namespace persoflow::formats {
namespace {

using ::testing::HasSubstr;

// Random peeks, reads and skips against the same data from memory; every byte and offset agree.
void check_against_memory(ByteSource& src, const Bytes& data, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uint64_t pos = 0;
  while (pos < data.size()) {
    ASSERT_EQ(src.offset(), pos);
    const std::size_t n = 1 + rng() % std::min<std::size_t>(src.max_peek(), 300);
    const std::size_t expect = std::min<std::size_t>(n, data.size() - pos);
    switch (rng() % 4) {
      case 0: {
        auto peeked = src.peek(n);
        ASSERT_TRUE(peeked.has_value()) << peeked.error().message();
        ASSERT_EQ(peeked->size(), expect);
        ASSERT_TRUE(
            std::equal(peeked->begin(), peeked->end(), data.begin() + static_cast<long>(pos)));
        break;
      }
      case 1: {
        auto got = src.read(n);
        ASSERT_TRUE(got.has_value()) << got.error().message();
        ASSERT_EQ(got->size(), expect);
        ASSERT_TRUE(std::equal(got->begin(), got->end(), data.begin() + static_cast<long>(pos)));
        pos += got->size();
        break;
      }
      case 2: {
        auto got = src.read_some(n * 5);  // may exceed the window: returns what is buffered
        ASSERT_TRUE(got.has_value()) << got.error().message();
        ASSERT_GE(got->size(), 1u);
        ASSERT_LE(got->size(), std::min<std::size_t>(n * 5, data.size() - pos));
        ASSERT_TRUE(std::equal(got->begin(), got->end(), data.begin() + static_cast<long>(pos)));
        pos += got->size();
        break;
      }
      default: {
        auto skipped = src.skip(n * 3);
        ASSERT_TRUE(skipped.has_value());
        ASSERT_EQ(*skipped, std::min<std::uint64_t>(n * 3, data.size() - pos));
        pos += *skipped;
        break;
      }
    }
  }
  EXPECT_EQ(src.offset(), data.size());
  auto end = src.at_end();
  ASSERT_TRUE(end.has_value());
  EXPECT_TRUE(*end);
  auto past = src.read(10);
  ASSERT_TRUE(past.has_value());
  EXPECT_TRUE(past->empty());
  auto past_some = src.read_some(10);
  ASSERT_TRUE(past_some.has_value());
  EXPECT_TRUE(past_some->empty());
}

TEST(ByteSource, FileWithSmallAndDefaultBuffersMatchesMemory) {
  test::TempDir dir("bytesource-test");
  const Bytes data = cms_test::random_bytes(300000);
  cms_test::store(dir / "data.bin", data);
  for (std::size_t buffer :
       {FdByteSource::kMinBufferSize, std::size_t{1000}, FdByteSource::kDefaultBufferSize}) {
    SCOPED_TRACE("buffer " + std::to_string(buffer));
    auto src = FdByteSource::open((dir / "data.bin").string(), buffer);
    ASSERT_TRUE(src.has_value()) << src.error().message();
    EXPECT_EQ(src->max_peek(), buffer);
    check_against_memory(*src, data, static_cast<std::uint32_t>(buffer));
  }
  MemoryByteSource mem(data, 77);
  check_against_memory(mem, data, 5);
}

TEST(ByteSource, PeekBeyondTheWindowIsRefused) {
  const Bytes data(100, 1);
  MemoryByteSource mem(data, 16);
  auto r = mem.peek(17);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kInternal);
  EXPECT_THAT(r.error().message(), HasSubstr("exceeds the window of 16"));
}

TEST(ByteSource, BaseOffsetShiftsReportedOffsets) {
  const Bytes data = {1, 2, 3};
  MemoryByteSource mem(data, MemoryByteSource::kUnlimited, 1000);
  EXPECT_EQ(mem.offset(), 1000u);
  ASSERT_TRUE(mem.read(2).has_value());
  EXPECT_EQ(mem.offset(), 1002u);
}

TEST(ByteSource, OpenErrorsAndBufferLimits) {
  auto missing = FdByteSource::open("/nonexistent/persoflow/file");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  auto small = FdByteSource::open("/dev/null", 8);
  ASSERT_FALSE(small.has_value());
  EXPECT_EQ(small.error().code(), ErrorCode::kInvalidArgument);
  auto empty = FdByteSource::open("/dev/null");
  ASSERT_TRUE(empty.has_value());
  auto end = empty->at_end();
  ASSERT_TRUE(end.has_value());
  EXPECT_TRUE(*end);
  // A directory opens but cannot be read: kIo naming the offset.
  auto dir = FdByteSource::open("/");
  ASSERT_TRUE(dir.has_value());
  auto r = dir->peek(1);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kIo);
  EXPECT_THAT(r.error().message(), HasSubstr("read failed at byte 0"));
}

TEST(ByteSource, BorrowedPipeIsReadToItsEndAndLeftOpen) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const std::string text = "persoflow byte source";
  ASSERT_EQ(write(fds[1], text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fds[1]);
  {
    auto src = FdByteSource::borrow(fds[0], FdByteSource::kMinBufferSize);
    ASSERT_TRUE(src.has_value());
    FdByteSource moved = std::move(*src);  // the move keeps the position and the descriptor
    auto got = moved.read(64);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(std::string(got->begin(), got->end()), text);
    EXPECT_EQ(moved.offset(), text.size());
  }
  EXPECT_NE(fcntl(fds[0], F_GETFD), -1) << "a borrowed descriptor must stay open";
  close(fds[0]);
}

}  // namespace
}  // namespace persoflow::formats
