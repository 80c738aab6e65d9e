import Support
import Foundation
import Support

/// Binary classification metrics of scores against 0/1 labels.
public enum Metrics {
    /// ROC-AUC: P(score of a random positive > score of a random negative), ties count 1/2
    /// (the Mann-Whitney statistic). NaN when one class is absent.
    public static func rocAUC(_ scores: [Double], _ labels: [Int]) -> Double {
        let pos = labels.filter { $0 == 1 }.count, neg = labels.count - pos
        guard pos > 0, neg > 0 else { return .nan }
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var rankSum = 0.0, i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && scores[order[j + 1]] == scores[order[i]] { j += 1 }
            let avgRank = Double(i + j) / 2 + 1
            for k in i...j where labels[order[k]] == 1 { rankSum += avgRank }
            i = j + 1
        }
        return (rankSum - Double(pos) * Double(pos + 1) / 2) / (Double(pos) * Double(neg))
    }

    /// Average precision (PR-AUC as scikit-learn computes it): sum over thresholds of
    /// (R_k - R_{k-1}) P_k, tied scores forming one threshold. NaN without positives.
    public static func averagePrecision(_ scores: [Double], _ labels: [Int]) -> Double {
        let pos = labels.filter { $0 == 1 }.count
        guard pos > 0 else { return .nan }
        let order = scores.indices.sorted { scores[$0] > scores[$1] }
        var tp = 0, fp = 0, ap = 0.0, lastRecall = 0.0, i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && scores[order[j + 1]] == scores[order[i]] { j += 1 }
            for k in i...j { if labels[order[k]] == 1 { tp += 1 } else { fp += 1 } }
            let recall = Double(tp) / Double(pos), precision = Double(tp) / Double(tp + fp)
            ap += (recall - lastRecall) * precision
            lastRecall = recall
            i = j + 1
        }
        return ap
    }

    /// F1 of predictions score >= threshold (0 when there is no true positive).
    public static func f1(_ scores: [Double], _ labels: [Int], threshold: Double) -> Double {
        var tp = 0, fp = 0, fn = 0
        for (s, y) in zip(scores, labels) {
            let p = s >= threshold
            if p && y == 1 { tp += 1 } else if p { fp += 1 } else if y == 1 { fn += 1 }
        }
        return tp == 0 ? 0 : 2 * Double(tp) / Double(2 * tp + fp + fn)
    }

    public static func accuracy(_ scores: [Double], _ labels: [Int], threshold: Double) -> Double {
        guard !labels.isEmpty else { return .nan }
        return Double(zip(scores, labels).filter { ($0 >= threshold) == ($1 == 1) }.count) / Double(labels.count)
    }

    /// The threshold (among the observed scores) that maximises F1.
    public static func bestF1Threshold(_ scores: [Double], _ labels: [Int]) -> Double {
        var best = 0.5, bestF1 = -1.0
        for t in Set(scores) {
            let f = f1(scores, labels, threshold: t)
            if f > bestF1 || (f == bestF1 && abs(t - 0.5) < abs(best - 0.5)) { bestF1 = f; best = t }
        }
        return best
    }

    /// Every metric on the whole set and as mean +- std over `resamples` subsets of `fraction` of the rows
    /// drawn without replacement (the paper's protocol: 10 resamples of 80 %).
    public static func report(_ scores: [Double], _ labels: [Int], threshold: Double, resamples: Int = 10,
                              fraction: Double = 0.8, seed: UInt64 = 0) -> [String: Any] {
        func all(_ s: [Double], _ y: [Int]) -> [String: Double] {
            ["f1": f1(s, y, threshold: 0.5), "f1_at_threshold": f1(s, y, threshold: threshold),
             "pr_auc": averagePrecision(s, y), "roc_auc": rocAUC(s, y), "accuracy": accuracy(s, y, threshold: 0.5)]
        }
        var rng = RNG(seed: seed)
        let k = max(1, Int((Double(scores.count) * fraction).rounded()))
        var samples: [[String: Double]] = []
        if !scores.isEmpty {
            for _ in 0..<resamples {
                let idx = rng.permutation(scores.count).prefix(k)
                samples.append(all(idx.map { scores[$0] }, idx.map { labels[$0] }))
            }
        }
        var out: [String: Any] = ["n": scores.count, "positives": labels.filter { $0 == 1 }.count, "threshold": threshold]
        let full = all(scores, labels)
        for key in full.keys.sorted() {
            let v = samples.map { $0[key]! }.filter { $0.isFinite }
            let mean = v.isEmpty ? Double.nan : v.reduce(0, +) / Double(v.count)
            let std = v.count < 2 ? 0 : (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count - 1)).squareRoot()
            out[key] = ["mean": jsonNumber(mean), "std": jsonNumber(std), "full": jsonNumber(full[key]!)]
        }
        return out
    }

    /// NaN is not JSON: written as null.
    static func jsonNumber(_ v: Double) -> Any { v.isFinite ? v : NSNull() }
}
