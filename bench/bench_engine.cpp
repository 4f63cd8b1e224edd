// Microbenchmarks of engine vocabulary on the hot path of prep: hex, BER-TLV, DGI and
// APDU coding. Names: BM_<Area>_<Op>; items and bytes processed are reported.
#include <benchmark/benchmark.h>

#include "engine/apdu.h"
#include "engine/dgi.h"
#include "engine/hex.h"
#include "engine/scp03.h"
#include "engine/tlv.h"

namespace persoflow {
namespace {

Bytes sample(std::size_t n) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(i * 31 + 7);
  return b;
}

void BM_Hex_Encode(benchmark::State& state) {
  const Bytes data = sample(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(to_hex(data));
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Hex_Encode)->Arg(16)->Arg(261);

void BM_Hex_Decode(benchmark::State& state) {
  const std::string text = to_hex(sample(static_cast<std::size_t>(state.range(0))));
  for (auto _ : state) benchmark::DoNotOptimize(from_hex(text));
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Hex_Decode)->Arg(16)->Arg(261);

// A 70-template record of a typical payment card (tags 57, 5A, 5F20, 5F24, 9F1F).
Bytes record_template() {
  Bytes inner;
  auto add = [&](Tag tag, std::size_t len) { (void)append_tlv(inner, tag, sample(len)); };
  add(0x57, 19);
  add(0x5A, 8);
  add(0x5F20, 26);
  add(0x5F24, 3);
  add(0x9F1F, 40);
  return encode_tlv(0x70, inner).value();
}

void BM_Tlv_Encode(benchmark::State& state) {
  const Bytes v19 = sample(19), v26 = sample(26), v40 = sample(40);
  for (auto _ : state) {
    Bytes inner;
    (void)append_tlv(inner, 0x57, v19);
    (void)append_tlv(inner, 0x5F20, v26);
    (void)append_tlv(inner, 0x9F1F, v40);
    benchmark::DoNotOptimize(encode_tlv(0x70, inner));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Tlv_Encode);

void BM_Tlv_ParseTree(benchmark::State& state) {
  const Bytes rec = record_template();
  for (auto _ : state) benchmark::DoNotOptimize(parse_tlv_tree(rec));
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(rec.size()));
}
BENCHMARK(BM_Tlv_ParseTree);

void BM_Dgi_Encode(benchmark::State& state) {
  const Bytes value = sample(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(encode_dgi(0x0101, value));
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Dgi_Encode)->Arg(100)->Arg(300);

void BM_Apdu_Serialize(benchmark::State& state) {
  const Bytes data = sample(static_cast<std::size_t>(state.range(0)));
  const CommandApdu apdu = CommandApdu::create(0x84, 0xE2, 0x00, 0x00, data).value();
  for (auto _ : state) benchmark::DoNotOptimize(apdu.to_bytes());
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Apdu_Serialize)->Arg(64)->Arg(255)->Arg(1000);

void BM_Apdu_Parse(benchmark::State& state) {
  const Bytes bytes = CommandApdu::create(0x84, 0xE2, 0x00, 0x00, sample(200), 256).value().to_bytes();
  for (auto _ : state) benchmark::DoNotOptimize(CommandApdu::parse(bytes));
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes.size()));
}
BENCHMARK(BM_Apdu_Parse);

// One SCP03 card session in pseudo-random mode (i=70, host mode: keys in SecureBytes):
// expected INITIALIZE UPDATE response, session keys, EXTERNAL AUTHENTICATE.
void BM_Scp03_OpenSession(benchmark::State& state) {
  const SecureBytes k_enc(sample(16)), k_mac(sample(16));
  const Bytes kdd = sample(10), aid = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00}, hc = sample(8);
  for (auto _ : state) {
    auto resp = scp03_expected_init_update_response(k_enc, k_mac, kdd, 0x30, 0x70, 1, aid, hc).value();
    auto session = Scp03Session::open(k_enc, k_mac, hc, resp, 0x33).value();
    benchmark::DoNotOptimize(session.external_authenticate());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Scp03_OpenSession);

// Wrapping one STORE DATA of `range(0)` bytes with C-MAC + C-DECRYPTION (level 33).
void BM_Scp03_WrapApdu(benchmark::State& state) {
  const SecureBytes k_enc(sample(16)), k_mac(sample(16));
  const Bytes kdd = sample(10), aid = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00}, hc = sample(8);
  auto resp = scp03_expected_init_update_response(k_enc, k_mac, kdd, 0x30, 0x70, 1, aid, hc).value();
  auto session = Scp03Session::open(k_enc, k_mac, hc, resp, 0x33).value();
  (void)session.external_authenticate();
  const CommandApdu plain =
      CommandApdu::create(0x80, 0xE2, 0x00, 0x00, sample(static_cast<std::size_t>(state.range(0)))).value();
  for (auto _ : state) benchmark::DoNotOptimize(session.wrap(plain));
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Scp03_WrapApdu)->Arg(32)->Arg(200);

}  // namespace
}  // namespace persoflow

BENCHMARK_MAIN();
