#include "pipeline/import_graph.h"

#include <tbb/flow_graph.h>

namespace persoflow::pipeline {

void run_import_graph(EnvelopeSource& source, const RecordParser& parser, SegmentAssembler& assembler,
                      const SegmentEncoder& encoder, const BatchSink& sink, RunState& state,
                      std::size_t max_batches_in_flight) {
  using namespace tbb::flow;
  graph g;
  bool done = false;

  input_node<RecordBatch> read(g, [&](tbb::flow_control& fc) -> RecordBatch {
    if (done || state.failed()) {
      fc.stop();
      return {};
    }
    auto batch = source.next();
    if (!batch) {
      state.fail(std::move(batch).error());
      fc.stop();
      return {};
    }
    done = batch->last;
    return std::move(batch).value();
  });
  limiter_node<RecordBatch> limit(g, max_batches_in_flight);
  function_node<RecordBatch, ParsedBatch> parse(g, unlimited, [&](RecordBatch b) { return parser(std::move(b)); });
  sequencer_node<ParsedBatch> parsed_in_order(g, [](const ParsedBatch& b) { return b.seq; });
  function_node<ParsedBatch, AssembledBatch> assemble(g, serial, [&](ParsedBatch b) { return assembler(std::move(b)); });
  function_node<AssembledBatch, EncodedBatch> encode(g, unlimited, [&](AssembledBatch b) { return encoder(std::move(b)); });
  sequencer_node<EncodedBatch> encoded_in_order(g, [](const EncodedBatch& b) { return b.seq; });
  function_node<EncodedBatch, continue_msg> write(g, serial, [&](EncodedBatch b) {
    sink(std::move(b));
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
