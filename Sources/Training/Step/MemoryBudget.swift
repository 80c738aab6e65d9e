import Communication
import Config
import Foundation
import Model
import NN
import Support

/// What a training replica holds at once, roughly, against its node's memory: a configuration that cannot fit is
/// refused before anything is allocated (exit 2, naming the keys), instead of an allocation failure or the kernel's
/// OOM killer mid-run.
public enum MemoryBudget {
    /// Bytes of activations one row keeps for backward: each layer ~12 widths of d per token (molecule and code
    /// encoders; grouping and self-attention over the centroids and the sentences' levels), plus the row's sentence
    /// vectors at 3 levels.
    public static func activationBytesPerRow(_ m: ModelConfig, molTokens: Int, codes: Int, sentences: Int) -> Double {
        let tokens = Double(m.molLayers * molTokens + m.disLayers * codes)
            + 3 * Double(m.groupingLayers * (m.selfLayers + 1) * m.centroids + molTokens + codes + sentences)
        return (tokens * Double(m.dim) * 12 + 3 * Double(sentences * m.encoderDim)) * 4
    }

    /// Parameters of the DM branch of `config`, counted without building it.
    public static func parameterCount(_ config: ModelConfig) -> Int {
        let arena = ParameterArena.counting()
        _ = CLaDMoP(config, params: arena)
        return arena.count
    }

    /// Parameters of the fine-tuning model (`OutcomeModel`): the DM branch, its LoRA adapters and the outcome head.
    public static func parameterCount(_ config: ModelConfig, head spec: OutcomeHeadSpec) -> Int {
        let arena = ParameterArena.counting()
        let model = CLaDMoP(config, params: arena)
        if spec.loraCross || spec.loraSelf {
            model.addLoRA(rank: spec.loraRank, alpha: spec.loraAlpha, cross: spec.loraCross, selfAttention: spec.loraSelf, group: 1)
        }
        _ = PredictionHead(arena, inputDim: config.encoderDim + config.dim, hiddenDim: spec.headHidden, group: 2)
        return arena.count
    }

    /// Floats a contrastive step holds besides its rows' activations (`ContrastiveStep`, `symmetricInfoNCE`): both
    /// sides of every pair of the global batch B gathered, (B, E) each, their normalised copies, one block of logits,
    /// (min(tile, B), B), and the rank's own n rows' f_C, f_DM and two gradients of f_DM, (n, E) each. With
    /// `train.chunk_size` these, not the chunk's activations, can dominate.
    public static func contrastiveLossFloats(globalBatch b: Int, localRows n: Int, width e: Int, tileRows: Int) -> Double {
        4 * Double(b) * Double(e) + Double(min(max(tileRows, 1), b)) * Double(b) + 4 * Double(n) * Double(e)
    }

    /// MPI counts an all-gather's floats in 32-bit integers: a global batch whose (B, E) embeddings exceed that is
    /// refused, naming the key (it had stopped every rank at a precondition).
    public static func requireGatherable(globalBatch b: Int, width e: Int, widthName: String) throws {
        guard Double(b) * Double(e) < Double(Int32.max) else {
            throw InputError.invalid("train.global_batch", b, expected: "at most \(Int(Int32.max) / e) with \(widthName) \(e): "
                                     + "the all-gather of the batch's (B, \(e)) embeddings counts its floats in 32 bits (MPI)")
        }
    }

    /// What each rank of this node may use: 80 % of the memory the process may use (the machine's, or its control
    /// group's limit: `MemoryLimit`) over the node's ranks (OpenMPI's OMPI_COMM_WORLD_LOCAL_SIZE; without it, the
    /// ranks whose host name is this rank's), and a phrase that says so for messages.
    public static func share(_ comm: Communicator) -> (bytes: Double, description: String) {
        let here = comm.hostNames.indices.contains(comm.rank) ? comm.hostNames[comm.rank] : nil
        let sameHost = here.map { h in comm.hostNames.filter { $0 == h }.count } ?? comm.size
        let local = max(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap { Int($0) } ?? sameHost, 1)
        let limit = MemoryLimit.current()
        let bytes = limit.bytes * 0.8 / Double(local)
        return (bytes, "\(limit.source) allows \(describeBytes(bytes)) per rank (80 % of \(describeBytes(limit.bytes)) over \(local) rank(s) on this node)")
    }

    /// Refuses a replica of `parameters` parameters (values, gradients, two optimizer moments: 16 bytes each) that
    /// keeps the activations of `rows` rows at once, when it exceeds this rank's share of the node's memory; returns
    /// the estimate in bytes. `rowsKey` names what sets the rows; `hint` says what to lower. `loss`: a contrastive
    /// step's gathered batch and logits (`contrastiveLossFloats`) and the keys that set them. `kept`: copies of
    /// parameters held besides the replica (fine-tuning's `finetune.epoch_selection: pooled` keeps every member's
    /// trainable parameters of every epoch until the ensemble's epoch is chosen), as floats and the keys that set them.
    @discardableResult
    public static func require(parameters: Int, rows: Int, bytesPerRow: Double, rowsKey: String,
                               kept: (floats: Double, keys: String)? = nil, loss: (floats: Double, keys: String)? = nil,
                               hint: String, comm: Communicator) throws -> Double {
        let parameterBytes = Double(parameters) * 16, activationBytes = Double(rows) * bytesPerRow
        let keptBytes = (kept?.floats ?? 0) * 4, lossBytes = (loss?.floats ?? 0) * 4
        let (available, availableText) = share(comm)
        func gib(_ bytes: Double) -> String { String(format: "%.1f GiB", bytes / 1_073_741_824) }
        let total = parameterBytes + activationBytes + keptBytes + lossBytes
        guard total <= available else {
            throw InputError("this model needs about \(gib(total)) per rank (\(gib(parameterBytes)) for \(parameters) parameters "
                             + "with their gradients and optimizer moments, \(gib(activationBytes)) of activations for \(rows) rows at once: \(rowsKey)"
                             + (kept.map { ", \(gib(keptBytes)) of parameters kept: \($0.keys)" } ?? "")
                             + (loss.map { ", \(gib(lossBytes)) for the gathered global batch and the loss's logits: \($0.keys)" } ?? "") + "); "
                             + "\(availableText): \(hint)")
        }
        return total
    }

    /// The bounds of one contrastive step (`ContrastiveStep`, pretraining and `cladmop bench` alike), before anything is
    /// allocated: its all-gather (`requireGatherable`, `widthName` naming the width's key) and its memory (`require`):
    /// the replica, ceil(B / ranks) rows of activations at once (train.chunk_size of them when set), and the gathered
    /// global batch with the loss's logit tiles. Returns the estimate in bytes.
    @discardableResult
    public static func requireContrastiveStep(_ config: ModelConfig, train: TrainSpec, molTokens: Int, codes: Int, sentences: Int,
                                              widthName: String, hint: String, comm: Communicator) throws -> Double {
        let globalBatch = train.globalBatch, localRows = (train.globalBatch + comm.size - 1) / comm.size
        try requireGatherable(globalBatch: globalBatch, width: config.encoderDim, widthName: widthName)
        return try require(parameters: parameterCount(config),
                           rows: train.chunkSize > 0 ? min(train.chunkSize, localRows) : localRows,
                           bytesPerRow: activationBytesPerRow(config, molTokens: molTokens, codes: codes, sentences: sentences),
                           rowsKey: "train.global_batch = \(globalBatch) over \(comm.size) rank(s), train.chunk_size = \(train.chunkSize)",
                           loss: (contrastiveLossFloats(globalBatch: globalBatch, localRows: localRows, width: config.encoderDim, tileRows: train.lossTileRows),
                                  "train.global_batch = \(globalBatch), train.loss_tile_rows = \(train.lossTileRows)"),
                           hint: hint, comm: comm)
    }
}
