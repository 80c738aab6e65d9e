import Communication
import Foundation
import Model
import NN
import Support
import TrialData

/// Per-trial embeddings of a checkpoint's DM branch, in the order of the CSV's rows.
public struct TrialEmbeddings {
    public var nctids: [String]
    /// f_DM (n, E), f_C (n, E) at the chosen criteria level, mean(U^{D,M}) (n, d).
    public var fDM: [Float], fC: [Float], pooled: [Float]
    public var encoderDim: Int, modelDim: Int
}

/// Embeds every trial of `rows`: ranks take disjoint shards (`shard`), `chunk` trials per forward (in `arena`),
/// and every rank gets all rows in order. `stall`: a watchdog for `cladmop embed` (as `scoreTrials`: only a rank
/// that stopped answering ends the job); nil inside pretraining's retrieval evaluation, whose own watchdog runs and
/// `progress` beats (called after every chunk).
public func embedTrials(_ rows: [StoredTrial], model: CLaDMoP, builder: BatchBuilder, level: Int, comm: Communicator,
                        chunk: Int = 64, arena: ActivationArena = ActivationArena(), stall: StallPolicy? = nil,
                        progress: (() -> Void)? = nil) -> TrialEmbeddings {
    let e = model.config.encoderDim, d = model.config.dim
    let mine = shard(rows.count, rank: comm.rank, of: comm.size)
    let watchdog = stall.map { Watchdog.ofPeers($0, comm: comm, activity: "embedding") }
    defer { watchdog?.stop() }
    var fDM: [Float] = [], fC: [Float] = [], pooled: [Float] = []
    for start in stride(from: mine.lowerBound, to: mine.upperBound, by: chunk) {
        let batch = builder.batch(Array(rows[start..<min(start + chunk, mine.upperBound)]))
        arena.reset()
        let state = model.forward(batch, arena: arena)
        let c = arena.allocate(batch.count * e)
        batch.criteriaEmbedding(dim: e, level: level, into: c)
        fDM += UnsafeBufferPointer(start: state.fDM, count: batch.count * e)
        fC += UnsafeBufferPointer(start: c, count: batch.count * e)
        pooled += UnsafeBufferPointer(start: state.pooled, count: batch.count * d)
        watchdog?.beat(); progress?()
    }
    return TrialEmbeddings(nctids: rows.map(\.nctid), fDM: gatherRows(fDM, total: rows.count, width: e, comm: comm),
                           fC: gatherRows(fC, total: rows.count, width: e, comm: comm),
                           pooled: gatherRows(pooled, total: rows.count, width: d, comm: comm), encoderDim: e, modelDim: d)
}

/// Writes the embeddings as safetensors: `f_dm` (n, E), `f_c` (n, E), `pooled` (n, d), and in the metadata
/// `nctids` (comma-separated, row order) and `level`, `checkpoint`, `data`.
public func writeEmbeddings(_ x: TrialEmbeddings, path: String, metadata: [String: String]) throws {
    let n = x.nctids.count
    try x.fDM.withUnsafeBufferPointer { a in
        try x.fC.withUnsafeBufferPointer { b in
            try x.pooled.withUnsafeBufferPointer { c in
                let empty = UnsafePointer<Float>(bitPattern: 64)!
                try writeSafetensors(path: path, tensors: [("f_dm", [n, x.encoderDim], a.baseAddress ?? empty),
                                                           ("f_c", [n, x.encoderDim], b.baseAddress ?? empty),
                                                           ("pooled", [n, x.modelDim], c.baseAddress ?? empty)],
                                     metadata: metadata.merging(["nctids": x.nctids.joined(separator: ",")]) { a, _ in a })
            }
        }
    }
}
