import Communication
import Config
import Foundation
import NN
import Support
import TextEncoder
import TrialData

/// What `cladmop bench --encoder` measured (JSON keys as written by `--json`).
public struct EncoderBenchmarkResult: Codable {
    public var encoder: String, sentences: Int, tokens: Int, worldSize: Int, seconds: Double
    public var sentencesPerSecond: Double, tokensPerSecond: Double
    enum CodingKeys: String, CodingKey {
        case encoder, sentences, tokens, worldSize = "world_size", seconds, sentencesPerSecond = "sentences_per_second"
        case tokensPerSecond = "tokens_per_second"
    }
}

/// Encodes the distinct criterion sentences of `csv` with the configured encoder; ranks take batches
/// round-robin (as featurize does). Model loading is not timed. `sentencesOut`: the sentences, one per line.
public func encoderBenchmark(spec: RunSpec, csv: String, comm: Communicator, sentencesOut: String?) throws -> EncoderBenchmarkResult {
    let (trials, _) = try readTrials(paths: [csv])
    var seen = Set<String>(), texts: [String] = []
    for t in trials { for c in splitCriteria(t.criteria) where !seen.contains(c.text) { seen.insert(c.text); texts.append(c.text) } }
    guard !texts.isEmpty else {
        throw InputError(file: csv, "has no criterion sentence to encode (\(trials.count) trial(s), every criteria field empty); expected a TOP CSV with criteria")
    }
    let enc = try BertEncoder(modelDir: spec.encoder.modelDir, maxLength: spec.encoder.maxTokens,
                              precision: resolvedPrecision(spec.encoder.precision, key: "encoder.precision", comm: comm))
    // Written after the encoder's files were read, so the atomic write also refuses to replace one of them.
    if let sentencesOut {
        try writeTextFile(sentencesOut, texts.map { $0.replacingOccurrences(of: "\n", with: " ") }.joined(separator: "\n") + "\n")
    }
    let tokens = texts.map { enc.tokenizer.encode($0) }
    let batches = BertEncoder.batches(lengths: tokens.map(\.count), maxBatchTokens: spec.encoder.batchTokens)
    let out = FloatPtr.allocate(capacity: max(texts.count * 3 * enc.hidden, 1))
    defer { out.deallocate() }
    comm.barrier()
    let t0 = monotonicSeconds()
    for (k, b) in batches.enumerated() where k % comm.size == comm.rank { enc.encode(indices: b, tokens: tokens, into: out) }
    comm.barrier()
    let seconds = monotonicSeconds() - t0
    let tokenCount = tokens.reduce(0) { $0 + $1.count }
    return EncoderBenchmarkResult(encoder: enc.identity, sentences: texts.count, tokens: tokenCount, worldSize: comm.size, seconds: seconds,
                                  sentencesPerSecond: Double(texts.count) / seconds, tokensPerSecond: Double(tokenCount) / seconds)
}
