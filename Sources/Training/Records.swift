import Foundation

// The lines of metrics.jsonl, one JSON object each, keys as written (docs/checkpoints.md's run layout).
// Values that can be undefined (a loss over an empty split) are optional and left out of the record when nil
// (synthesized Codable: encodeIfPresent; the elements of an array of optionals, pooled_by_epoch, are null); a
// non-finite one is never written (`finite`).

/// A pretraining step (every train.log_every steps).
public struct TrainRecord: Codable, Equatable {
    public var type = "train"
    public var step: Int, epoch: Double, loss: Double?, gradNorm: Double?, lr: Double, samplesPerSecond: Double
    public var worldSize: Int, globalBatch: Int
    enum CodingKeys: String, CodingKey {
        case type, step, epoch, loss, gradNorm = "grad_norm", lr, samplesPerSecond = "samples_per_second", worldSize = "world_size"
        case globalBatch = "global_batch"
    }
}

/// A validation evaluation of pretraining (retrieval over the SCT validation split).
public struct EvalRecord: Codable, Equatable {
    public var type = "eval"
    public var step: Int, epoch: Double, valLoss: Double?
    public var valTop1C2dm: Double?, valTop5C2dm: Double?, valTop1Dm2c: Double?, valTop5Dm2c: Double?
    public var valSize: Int, chanceTop1: Double, best: Bool
    enum CodingKeys: String, CodingKey {
        case type, step, epoch, valLoss = "val_loss", valTop1C2dm = "val_top1_c2dm", valTop5C2dm = "val_top5_c2dm"
        case valTop1Dm2c = "val_top1_dm2c", valTop5Dm2c = "val_top5_dm2c", valSize = "val_size", chanceTop1 = "chance_top1", best
    }
}

/// The end of a pretraining run: its size, speed and memory.
public struct SummaryRecord: Codable, Equatable {
    public var type = "summary"
    public var step: Int, stepsRun: Int, worldSize: Int, globalBatch: Int, chunkSize: Int
    public var peakRssMb: Double, trainSeconds: Double, samplesPerSecond: Double, bestValLoss: Double?
    /// True when early stopping (train.patience) ended the run: the validation loss had stopped improving. False when
    /// the budget (epochs, max_steps) ran out first; nil in files written before this key existed.
    public var stoppedEarly: Bool?
    enum CodingKeys: String, CodingKey {
        case type, step, stepsRun = "steps_run", worldSize = "world_size", globalBatch = "global_batch", chunkSize = "chunk_size"
        case peakRssMb = "peak_rss_mb", trainSeconds = "train_seconds", samplesPerSecond = "samples_per_second"
        case bestValLoss = "best_val_loss", stoppedEarly = "stopped_early"
    }
}

/// A fine-tuning epoch: training loss and the validation metrics that select the epoch.
public struct FinetuneRecord: Codable, Equatable {
    public var type = "finetune"
    public var epoch: Int, trainLoss: Double?
    public var validPrAuc: Double?, validRocAuc: Double?, validF1: Double?, validF1AtThreshold: Double?, threshold: Double
    /// In an ensemble's RUN/metrics.jsonl, the member (1-based, members/k/) whose record it is; absent in a member's
    /// own log and in a single model's.
    public var member: Int? = nil
    enum CodingKeys: String, CodingKey {
        case type, epoch, trainLoss = "train_loss", validPrAuc = "valid_pr_auc", validRocAuc = "valid_roc_auc", validF1 = "valid_f1"
        case validF1AtThreshold = "valid_f1_at_threshold", threshold, member
    }
}

/// The last record of a fine-tuning ensemble's RUN/metrics.jsonl, after every member's records: how many members
/// (best.json's `members` lists their checkpoints), the fold partitions of a cross-fitted run (absent for a seed
/// ensemble), the epoch each member keeps, the `finetune.select_metric` value of the ensemble's scores (the mean of
/// the members' probabilities on the validation trials, or each trial's out-of-fold score when cross-fitted) and the F1
/// threshold chosen on them; with `finetune.epoch_selection: pooled`, that value at every epoch, which chose the one.
public struct EnsembleRecord: Codable, Equatable {
    public var type = "ensemble"
    public var members: Int, partitions: Int?, memberEpochs: [Int]
    public var selectMetric: String, valid: Double?, threshold: Double, outOfFold: Bool
    public var pooledByEpoch: [Double?]?
    enum CodingKeys: String, CodingKey {
        case type, members, partitions, memberEpochs = "member_epochs", selectMetric = "select_metric", valid, threshold
        case outOfFold = "out_of_fold", pooledByEpoch = "pooled_by_epoch"
    }
}

/// `v` when finite, else nil (JSON has no NaN).
@inline(__always) func finite(_ v: Double) -> Double? { v.isFinite ? v : nil }

/// What a metrics.jsonl record shows in TensorBoard (`log.tensorboard`): its step and (tag, value) pairs, the
/// JSON values under tags `section/key`; nil values are left out. Tests/TensorBoard/compare_events.py holds the
/// same table and checks the event files against metrics.jsonl.
public protocol ScalarRecord {
    var scalarStep: Int { get }
    var scalars: [(tag: String, value: Double?)] { get }
}

extension TrainRecord: ScalarRecord {
    public var scalarStep: Int { step }
    public var scalars: [(tag: String, value: Double?)] {
        [("train/loss", loss), ("train/lr", lr), ("train/grad_norm", gradNorm), ("train/samples_per_second", samplesPerSecond),
         ("train/epoch", epoch)]
    }
}

extension EvalRecord: ScalarRecord {
    public var scalarStep: Int { step }
    public var scalars: [(tag: String, value: Double?)] {
        [("val/loss", valLoss), ("val/top1_c2dm", valTop1C2dm), ("val/top5_c2dm", valTop5C2dm), ("val/top1_dm2c", valTop1Dm2c),
         ("val/top5_dm2c", valTop5Dm2c), ("val/chance_top1", chanceTop1), ("val/epoch", epoch)]
    }
}

extension SummaryRecord: ScalarRecord {
    public var scalarStep: Int { step }
    public var scalars: [(tag: String, value: Double?)] {
        [("summary/peak_rss_mb", peakRssMb), ("summary/train_seconds", trainSeconds), ("summary/samples_per_second", samplesPerSecond),
         ("summary/best_val_loss", bestValLoss)]
    }
}

/// Fine-tuning records are per epoch: the epoch is their step.
extension FinetuneRecord: ScalarRecord {
    public var scalarStep: Int { epoch }
    public var scalars: [(tag: String, value: Double?)] {
        [("finetune/train_loss", trainLoss), ("finetune/valid_pr_auc", validPrAuc), ("finetune/valid_roc_auc", validRocAuc),
         ("finetune/valid_f1", validF1), ("finetune/valid_f1_at_threshold", validF1AtThreshold), ("finetune/threshold", threshold)]
    }
}
