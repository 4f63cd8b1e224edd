#include "pipeline/import_graph.h"

#include <tbb/flow_graph.h>

namespace persoflow::pipeline {

RecordBatchPtr read_batch(EnvelopeSource& source, RunState& state, bool& done) {
  if (done || state.failed()) return nullptr;
  auto batch = source.next();
  if (!batch) {
    state.fail(std::move(batch).error());
    return nullptr;
  }
  done = batch->last;
  return std::make_shared<RecordBatch>(std::move(batch).value());
}

ParsedBatchPtr parse_batch(const RecordParser& parser, const RecordBatchPtr& batch) {
  return std::make_shared<ParsedBatch>(parser(std::move(*batch)));
}

void run_import_graph(EnvelopeSource& source, const RecordParser& parser, SegmentAssembler& assembler,
                      const SegmentEncoder& encoder, const BatchSink& sink, RunState& state,
                      std::size_t max_batches_in_flight) {
  using namespace tbb::flow;
  graph g;
  bool done = false;

  input_node<RecordBatchPtr> read(g, [&](tbb::flow_control& fc) {
    auto b = read_batch(source, state, done);
    if (!b) fc.stop();
    return b;
  });
  limiter_node<RecordBatchPtr> limit(g, max_batches_in_flight);
  function_node<RecordBatchPtr, ParsedBatchPtr> parse(g, unlimited, [&](const RecordBatchPtr& b) { return parse_batch(parser, b); });
  sequencer_node<ParsedBatchPtr> parsed_in_order(g, [](const ParsedBatchPtr& b) { return b->seq; });
  function_node<ParsedBatchPtr, std::shared_ptr<AssembledBatch>> assemble(g, serial, [&](const ParsedBatchPtr& b) {
    return std::make_shared<AssembledBatch>(assembler(std::move(*b)));
  });
  function_node<std::shared_ptr<AssembledBatch>, std::shared_ptr<EncodedBatch>> encode(
      g, unlimited, [&](const std::shared_ptr<AssembledBatch>& b) { return std::make_shared<EncodedBatch>(encoder(std::move(*b))); });
  sequencer_node<std::shared_ptr<EncodedBatch>> encoded_in_order(g, [](const std::shared_ptr<EncodedBatch>& b) { return b->seq; });
  function_node<std::shared_ptr<EncodedBatch>, continue_msg> write(g, serial, [&](const std::shared_ptr<EncodedBatch>& b) {
    sink(std::move(*b));
    return continue_msg();
  });

  make_edge(read, limit);
  make_edge(limit, parse);
  make_edge(parse, parsed_in_order);
  make_edge(parsed_in_order, assemble);
  make_edge(assemble, encode);
  make_edge(encode, encoded_in_order);
  make_edge(encoded_in_order, write);
  make_edge(write, limit.decrementer());

  read.activate();
  g.wait_for_all();
}

}  // namespace persoflow::pipeline
