// The import flow graph, built in one function (import_graph.cpp):
//
//   read (serial: envelope -> HSM decrypt -> record split, numbered batches)
//     -> limit (at most N batches in flight: bounded memory)
//     -> parse (parallel: fields, validation, HSM key-to-key for field-encrypted values)
//     -> in order -> assemble (serial: segments of N cards, duplicate ids)
//     -> encode (parallel: serialize, zstd, AES-GCM under the DKeps in the HSM)
//     -> in order -> write (serial: XOF segments and reject lines), then frees a slot
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "pipeline/import_stages.h"

namespace persoflow::pipeline {

// The graph's messages are shared pointers to batches: oneTBB copies a message into each
// buffer and body call, and a batch holds every card's clear values (a copy per node was
// a tenth of the import's CPU). Each message has one receiver, which moves the batch out.
using RecordBatchPtr = std::shared_ptr<RecordBatch>;
using ParsedBatchPtr = std::shared_ptr<ParsedBatch>;

// The bodies of the read and parse nodes, shared with `persoflow run`'s graph: the next
// batch, or nullptr when the input must stop (`done` is set after the last batch; a
// failure goes to `state`); and the batch parsed (moved out of the message).
RecordBatchPtr read_batch(EnvelopeSource& source, RunState& state, bool& done);
ParsedBatchPtr parse_batch(const RecordParser& parser, const RecordBatchPtr& batch);

// Receives every batch, in order, after encoding: writes it out.
using BatchSink = std::function<void(EncodedBatch&&)>;

// Runs the graph to its end. Failures are recorded in `state` (the first one wins);
// every batch read is still delivered to `sink` in order, possibly empty.
void run_import_graph(EnvelopeSource& source, const RecordParser& parser, SegmentAssembler& assembler,
                      const SegmentEncoder& encoder, const BatchSink& sink, RunState& state,
                      std::size_t max_batches_in_flight);

}  // namespace persoflow::pipeline
