#include "formats/zstd_codec.h"

#include <zstd.h>

#include <memory>
#include <string>

namespace persoflow::formats {
namespace {

struct CCtxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxDeleter {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

ZSTD_CCtx* thread_cctx() {
  thread_local std::unique_ptr<ZSTD_CCtx, CCtxDeleter> ctx(ZSTD_createCCtx());
  return ctx.get();
}

ZSTD_DCtx* thread_dctx() {
  thread_local std::unique_ptr<ZSTD_DCtx, DCtxDeleter> ctx(ZSTD_createDCtx());
  return ctx.get();
}

Error zstd_error(ErrorCode code, const std::string& what, std::size_t rc) {
  return Error(code, what + ": " + ZSTD_getErrorName(rc));
}

}  // namespace

std::uint32_t zstd_library_version() { return ZSTD_versionNumber(); }

Status check_zstd_level(int level) {
  if (level == 0 || level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()) {
    return Error(ErrorCode::kInvalidArgument,
                 "zstd level " + std::to_string(level) + " is outside " +
                     std::to_string(ZSTD_minCLevel()) + ".." + std::to_string(ZSTD_maxCLevel()) +
                     " (0 is not allowed: it means 'the default')");
  }
  return ok_status();
}

Result<SecureBytes> zstd_compress(std::span<const std::uint8_t> data, int level) {
  PF_TRY(check_zstd_level(level));
  ZSTD_CCtx* cctx = thread_cctx();
  if (cctx == nullptr)
    return Error(ErrorCode::kInternal, "zstd: cannot create a compression context");
  // Parameters are reset on every call: nothing of the previous frame leaks into this one,
  // and the output depends only on (data, level, library version).
  std::size_t rc = ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
  if (!ZSTD_isError(rc)) rc = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  if (!ZSTD_isError(rc)) rc = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0);
  if (!ZSTD_isError(rc)) rc = ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
  if (ZSTD_isError(rc))
    return zstd_error(ErrorCode::kInternal, "zstd: setting compression parameters", rc);
  SecureBytes out(ZSTD_compressBound(data.size()));
  rc = ZSTD_compress2(cctx, out.reveal_mutable().data(), out.size(), data.data(), data.size());
  if (ZSTD_isError(rc)) return zstd_error(ErrorCode::kInternal, "zstd: compression failed", rc);
  out.resize(rc);
  return out;
}

Result<SecureBytes> zstd_decompress(std::span<const std::uint8_t> frame, std::size_t max_size) {
  const unsigned long long content = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN) {
    return Error(ErrorCode::kParse, "zstd: not a frame with a declared content size");
  }
  if (content > max_size) {
    return Error(ErrorCode::kParse, "zstd: frame declares " + std::to_string(content) +
                                        " bytes, more than the " + std::to_string(max_size) +
                                        " allowed");
  }
  const std::size_t frame_size = ZSTD_findFrameCompressedSize(frame.data(), frame.size());
  if (ZSTD_isError(frame_size) || frame_size != frame.size()) {
    return Error(ErrorCode::kParse, "zstd: the data is not exactly one complete frame");
  }
  ZSTD_DCtx* dctx = thread_dctx();
  if (dctx == nullptr)
    return Error(ErrorCode::kInternal, "zstd: cannot create a decompression context");
  SecureBytes out(static_cast<std::size_t>(content));
  const std::size_t rc = ZSTD_decompressDCtx(dctx, out.reveal_mutable().data(), out.size(),
                                             frame.data(), frame.size());
  if (ZSTD_isError(rc)) return zstd_error(ErrorCode::kParse, "zstd: decompression failed", rc);
  if (rc != out.size())
    return Error(ErrorCode::kParse, "zstd: frame content is shorter than declared");
  return out;
}

}  // namespace persoflow::formats
