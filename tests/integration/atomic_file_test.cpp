// Publication of outputs (domain invariant 3): the XOF writer and AtomicFile never show
// a partial file under the final name, clean up after themselves, and replace or refuse
// an existing file as asked.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include "formats/atomic_file.h"
#include "tests/integration/xof_test_fixture.h"

namespace persoflow::test {
namespace {

using formats::AtomicFile;

std::vector<std::string> names_in(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

Bytes bytes_of(const std::string& s) { return Bytes(s.begin(), s.end()); }

TEST_F(XofTest, TheFinalNameAppearsOnlyWhenTheXofIsFinished) {
  auto h = header();
  ASSERT_TRUE(h.has_value());
  const auto path = dir_ / "out.xof";
  auto w = XofWriter::create(path.string(), *h);
  ASSERT_TRUE(w.has_value()) << w.error().message();
  const auto all = cards(6);
  for (std::uint32_t n = 0; n < 2; ++n) {
    EXPECT_FALSE(std::filesystem::exists(path));
    auto seg = formats::encode_segment(*h, n, std::span(all).subspan(3 * n, 3), class_keys_);
    ASSERT_TRUE(seg.has_value());
    ASSERT_TRUE(w->append(*seg).has_value());
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  // Only the temporary file exists, under another name, in the same directory.
  const auto during = names_in(dir_.path());
  ASSERT_EQ(during.size(), 1u);
  EXPECT_EQ(during[0].rfind(".out.xof.tmp-", 0), 0u) << during[0];
  EXPECT_EQ(std::filesystem::path(w->temp_path()).parent_path(), dir_.path());
  // A reader given the final name finds nothing; given the temporary file, no trailer.
  EXPECT_EQ(XofReader::open(path.string(), *integrity_).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(XofReader::open(w->temp_path(), *integrity_).error().code(), ErrorCode::kParse);

  ASSERT_TRUE(w->finish(*integrity_, 6, 0).has_value());
  EXPECT_EQ(names_in(dir_.path()), std::vector<std::string>{"out.xof"});
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(read_all(path).has_value());
}

TEST_F(XofTest, AnAbandonedWriterLeavesNothing) {
  auto h = header();
  ASSERT_TRUE(h.has_value());
  const auto path = dir_ / "abandoned.xof";
  {
    auto w = XofWriter::create(path.string(), *h);
    ASSERT_TRUE(w.has_value());
    auto seg = formats::encode_segment(*h, 0, cards(3), class_keys_);
    ASSERT_TRUE(seg.has_value());
    ASSERT_TRUE(w->append(*seg).has_value());
    EXPECT_EQ(names_in(dir_.path()).size(), 1u);
  }
  EXPECT_TRUE(names_in(dir_.path()).empty());
  {
    // A failed finish publishes nothing either.
    auto w = XofWriter::create(path.string(), *h);
    ASSERT_TRUE(w.has_value());
    EXPECT_FALSE(w->finish(*integrity_, 1, 0).has_value());
    EXPECT_FALSE(std::filesystem::exists(path));
  }
  EXPECT_TRUE(names_in(dir_.path()).empty());
}

TEST_F(XofTest, AnExistingXofIsReplacedAtomicallyAtFinish) {
  const auto path = dir_ / "rerun.xof";
  ASSERT_TRUE(write_xof(path, cards(2)).has_value());
  const Bytes old = file_bytes(path);
  auto h = header(Bytes(32, 0x01));
  ASSERT_TRUE(h.has_value());
  auto w = XofWriter::create(path.string(), *h);
  ASSERT_TRUE(w.has_value());
  auto seg = formats::encode_segment(*h, 0, cards(3), class_keys_);
  ASSERT_TRUE(seg.has_value());
  ASSERT_TRUE(w->append(*seg).has_value());
  EXPECT_EQ(file_bytes(path), old);  // readers still see the previous file, whole
  ASSERT_TRUE(w->finish(*integrity_, 3, 0).has_value());
  EXPECT_NE(file_bytes(path), old);
  auto got = read_all(path);
  ASSERT_TRUE(got.has_value()) << got.error().message();
  EXPECT_EQ(got->size(), 3u);
  EXPECT_EQ(names_in(dir_.path()), std::vector<std::string>{"rerun.xof"});
}

TEST(AtomicFileTest, WritesPatchesAndPublishes) {
  TempDir dir("persoflow-atomic");
  const auto path = dir / "report.txt";
  auto f = AtomicFile::create(path.string());
  ASSERT_TRUE(f.has_value()) << f.error().message();
  ASSERT_TRUE(f->write(bytes_of("count=0000\n")).has_value());
  ASSERT_TRUE(f->write(bytes_of("done\n")).has_value());
  EXPECT_EQ(f->size(), 16u);
  ASSERT_TRUE(f->pwrite(6, bytes_of("0042")).has_value());
  EXPECT_EQ(f->pwrite(14, bytes_of("xyz")).error().code(), ErrorCode::kInternal);  // past the end
  EXPECT_FALSE(std::filesystem::exists(path));
  ASSERT_TRUE(f->commit().has_value());
  EXPECT_TRUE(f->committed());
  EXPECT_EQ(read_file(path), "count=0042\ndone\n");
  EXPECT_EQ(f->write(bytes_of("late")).error().code(), ErrorCode::kInternal);
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"report.txt"});
}

TEST(AtomicFileTest, DestructionWithoutCommitRemovesTheTemporaryFile) {
  TempDir dir("persoflow-atomic");
  std::string temp;
  {
    auto f = AtomicFile::create((dir / "x.bin").string());
    ASSERT_TRUE(f.has_value());
    ASSERT_TRUE(f->write(bytes_of("partial")).has_value());
    temp = f->temp_path();
    EXPECT_TRUE(std::filesystem::exists(temp));
    AtomicFile moved = std::move(*f);  // ownership moves; only one removal
    EXPECT_TRUE(std::filesystem::exists(temp));
  }
  EXPECT_FALSE(std::filesystem::exists(temp));
  EXPECT_TRUE(names_in(dir.path()).empty());
}

TEST(AtomicFileTest, RefuseModeNeverReplacesAnExistingFile) {
  TempDir dir("persoflow-atomic");
  const auto path = dir / "once.txt";
  write_file(path, "first");
  const AtomicFile::Options refuse{AtomicFile::Existing::kRefuse, 0600};
  EXPECT_EQ(AtomicFile::create(path.string(), refuse).error().code(), ErrorCode::kAlreadyExists);

  std::filesystem::remove(path);
  auto f = AtomicFile::create(path.string(), refuse);
  ASSERT_TRUE(f.has_value());
  ASSERT_TRUE(f->write(bytes_of("second")).has_value());
  write_file(path, "raced");  // appears while the file is being written
  auto committed = f->commit();
  ASSERT_FALSE(committed.has_value());
  EXPECT_EQ(committed.error().code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(read_file(path), "raced");
  f->abandon();
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"once.txt"});

  std::filesystem::remove(path);
  auto g = AtomicFile::create(path.string(), refuse);
  ASSERT_TRUE(g.has_value());
  ASSERT_TRUE(g->write(bytes_of("third")).has_value());
  ASSERT_TRUE(g->commit().has_value());
  EXPECT_EQ(read_file(path), "third");
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"once.txt"});
}

// Last modified an hour ago.
void age(const std::filesystem::path& p) {
  std::filesystem::last_write_time(p, std::filesystem::file_time_type::clock::now() - std::chrono::hours(1));
}

// A killed writer leaves its temporary behind (no destructor runs); the next create() for
// the same final path removes it: its lock died with the process.
TEST(AtomicFileTest, TheTemporaryOfAKilledWriterIsRemovedByTheNextCreate) {
  TempDir dir("persoflow-atomic");
  const auto path = dir / "out.bin";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto f = AtomicFile::create(path.string());
    if (!f || !f->write(bytes_of("half a file")).has_value()) ::_exit(1);
    ::raise(SIGKILL);
    ::_exit(2);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  const auto left = names_in(dir.path());
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].rfind(".out.bin.tmp-", 0), 0u) << left[0];
  // Modified just now: it could be a writer's between its creation and its lock.
  EXPECT_TRUE(AtomicFile::remove_abandoned_temporaries(path.string()).empty());
  EXPECT_EQ(names_in(dir.path()), left);
  age(dir / left[0]);

  auto g = AtomicFile::create(path.string());
  ASSERT_TRUE(g.has_value()) << g.error().message();
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{std::filesystem::path(g->temp_path()).filename().string()});
  ASSERT_TRUE(g->write(bytes_of("whole")).has_value());
  ASSERT_TRUE(g->commit().has_value());
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"out.bin"});
}

// Only unlocked regular files named exactly like a temporary of that final path go: a
// writer's own temporary (locked) stays, and so do other names, other lengths, links and
// directories.
TEST(AtomicFileTest, OnlyAbandonedTemporariesOfTheSameOutputAreRemoved) {
  TempDir dir("persoflow-atomic");
  const auto path = dir / "out.bin";
  write_file(dir / ".out.bin.tmp-AbC123", "left by a killed run");
  write_file(dir / ".out.bin.tmp-AbC12", "five characters");
  write_file(dir / ".out.bin.tmp-AbC1234", "seven characters");
  write_file(dir / ".other.bin.tmp-AbC123", "another output's");
  write_file(dir / "target", "a link's target");
  std::filesystem::create_symlink(dir / "target", dir / ".out.bin.tmp-LnK000");
  std::filesystem::create_directory(dir / ".out.bin.tmp-Dir000");
  for (const char* name : {".out.bin.tmp-AbC123", ".out.bin.tmp-AbC12", ".out.bin.tmp-AbC1234",
                           ".other.bin.tmp-AbC123", "target", ".out.bin.tmp-Dir000"}) {
    age(dir / name);
  }

  auto live = AtomicFile::create(path.string());  // removes .out.bin.tmp-AbC123
  ASSERT_TRUE(live.has_value()) << live.error().message();
  ASSERT_TRUE(live->write(bytes_of("being written")).has_value());
  const std::string live_name = std::filesystem::path(live->temp_path()).filename().string();
  std::vector<std::string> expected = {".other.bin.tmp-AbC123", ".out.bin.tmp-AbC12", ".out.bin.tmp-AbC1234",
                                       ".out.bin.tmp-Dir000", ".out.bin.tmp-LnK000", live_name, "target"};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names_in(dir.path()), expected);

  // Another writer of the same output (in this process or another) finds the live one
  // locked and leaves it.
  EXPECT_TRUE(AtomicFile::remove_abandoned_temporaries(path.string()).empty());
  {
    write_file(dir / ".out.bin.tmp-XyZ789", "another killed run's");
    age(dir / ".out.bin.tmp-XyZ789");
    age(live->temp_path());  // a living writer's is kept by its lock, however old
    const auto removed = AtomicFile::remove_abandoned_temporaries(path.string());
    EXPECT_EQ(removed, std::vector<std::string>{(dir / ".out.bin.tmp-XyZ789").string()});
  }
  auto second = AtomicFile::create(path.string());
  ASSERT_TRUE(second.has_value());
  EXPECT_TRUE(std::filesystem::exists(live->temp_path()));
  second->abandon();
  ASSERT_TRUE(live->commit().has_value());
  EXPECT_EQ(read_file(path), "being written");
  EXPECT_EQ(read_file(dir / "target"), "a link's target");
}

TEST(AtomicFileTest, AMissingDirectoryIsNotFound) {
  TempDir dir("persoflow-atomic");
  auto f = AtomicFile::create((dir / "no-such-dir" / "x.xof").string());
  ASSERT_FALSE(f.has_value());
  EXPECT_EQ(f.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace persoflow::test
