import Foundation
import Support

/// Binary classification metrics of scores against 0/1 labels.
public enum Metrics {
    /// ROC-AUC: P(score of a random positive > score of a random negative), ties count 1/2
    /// (the Mann-Whitney statistic). NaN when one class is absent. A NaN score (a diverged model) ranks lowest (tied
    /// with -infinity).
    public static func rocAUC(_ scores: [Double], _ labels: [Int]) -> Double {
        let scores = scores.map { $0.isNaN ? -Double.infinity : $0 }     // a strict weak order for the sort
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
    /// (R_k - R_{k-1}) P_k, tied scores forming one threshold. NaN without positives. A NaN score ranks lowest (tied with -infinity).
    public static func averagePrecision(_ scores: [Double], _ labels: [Int]) -> Double {
        let scores = scores.map { $0.isNaN ? -Double.infinity : $0 }     // a strict weak order for the sort
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

    /// The F1-best cut of these scores (predictions score >= threshold): among the distinct finite scores t, the one
    /// whose cut maximises F1 (among equal F1, the t nearest 0.5), placed halfway between t and the next lower score
    /// (the same cut of these trials, not one trial's exact score: a trial's score moves in its last digits with the
    /// batch it is scored in, and a threshold equal to it would flip it), or 0 (the lowest score, if negative) when
    /// the best is to predict every trial successful, as `riskAverseF1Threshold`. One sort and a sweep over the
    /// distinct scores, highest first. A NaN score (a diverged model) is never predicted positive and never a
    /// threshold; 0.5 when no score is finite.
    public static func bestF1Threshold(_ scores: [Double], _ labels: [Int]) -> Double {
        let order = scores.indices.sorted { scores[$0] > scores[$1] || (!scores[$0].isNaN && scores[$1].isNaN) }   // NaN last
        let pos = labels.filter { $0 == 1 }.count
        var best = 0.5, bestF1 = -1.0, tp = 0, fp = 0, i = 0
        var below: Double? = nil     // the next lower finite score than `best`
        while i < order.count && !scores[order[i]].isNaN {
            let t = scores[order[i]]
            while i < order.count && scores[order[i]] == t { if labels[order[i]] == 1 { tp += 1 } else { fp += 1 }; i += 1 }
            let f = tp == 0 ? 0 : 2 * Double(tp) / Double(2 * tp + fp + (pos - tp))
            if f > bestF1 || (f == bestF1 && abs(t - 0.5) < abs(best - 0.5)) {
                bestF1 = f; best = t
                below = i < order.count && !scores[order[i]].isNaN ? scores[order[i]] : nil
            }
        }
        guard bestF1 >= 0 else { return 0.5 }
        return cut(keeping: best, below: below)
    }

    /// The threshold that keeps the scores from `high` up: halfway down to `low`, the next lower score (the same cut of
    /// these trials, not one trial's exact score, which moves in its last digits with the batch it is scored in), the
    /// kept score itself between adjacent doubles, and 0 (or `high`, if negative) when no score is lower: every trial
    /// predicted successful, a new one scoring below all of these too.
    static func cut(keeping high: Double, below low: Double?) -> Double {
        guard let low, low.isFinite else { return min(0, high) }
        let half = low + (high - low) / 2
        return half > low ? half : high
    }

    /// The F1 threshold that a small, noisy set of out-of-fold scores supports. For each of `resamples` bootstrap
    /// resamples b (drawn with replacement, `seed`, over the trials in score order, so the result does not depend on
    /// the order they come in) and each candidate threshold t (the distinct finite scores):
    ///   gain_b(t) = F1_b(score >= t) - F1_b(every trial successful)
    /// and the threshold is the t maximising the (1 - `confidence`) quantile of gain_b(t) over the resamples (the
    /// lowest such t on ties), placed halfway between t and the next lower score (the same cut of these trials, not
    /// one trial's exact score). When no t gains in a share `confidence` of the resamples (the lowest score's gain is 0
    /// in every resample, and a cut must beat it), the threshold is 0 (or the lowest score, if that is negative):
    /// every trial is predicted successful, a new one scoring below all of these too (the rule found no cut to
    /// trust, so it makes none). F1 on a positive-heavy set (TOP's phase III: 75 % successful) beats predicting
    /// success only where the model's lowest scores are mostly failures, and one F1-best threshold on a few hundred
    /// trials often is not (docs/outcome.md). 2,000 resamples estimate the quantile to about ± 0.7 % of the
    /// resamples (200: ± 2 %, enough for a cut held up by two trials, whose gain is 0 in 13.5 % of the resamples, to
    /// pass at 0.9 by the draw). A NaN score is never predicted positive and never a threshold ("every trial
    /// successful" is then every trial with a score); resamples without a positive are skipped.
    /// `candidatesPerPass`: how many candidates one pass over the resamples judges (its memory: that many times
    /// `resamples` Doubles); any value gives the same threshold. Each pass draws the resamples again (O(resamples x n)):
    /// one pass up to 4,096 distinct scores, 25 at 100,000.
    public static func riskAverseF1Threshold(_ scores: [Double], _ labels: [Int], confidence: Double, resamples: Int = 2000,
                                             seed: UInt64 = 0, candidatesPerPass: Int = 4096) -> Double {
        precondition((0...1).contains(confidence), "confidence \(confidence) is not in [0, 1]")
        precondition(candidatesPerPass > 0, "candidatesPerPass \(candidatesPerPass)")
        let order = scores.indices.sorted { a, b in
            let x = scores[a], y = scores[b]
            if x.isNaN || y.isNaN { return x.isNaN == y.isNaN ? labels[a] < labels[b] : y.isNaN }     // NaN last
            return x != y ? x < y : labels[a] < labels[b]
        }
        let s = order.map { scores[$0] }, y = order.map { labels[$0] == 1 }
        let finite = s.firstIndex(where: \.isNaN) ?? s.count
        guard finite > 0 else { return 0.5 }
        let starts = (0..<finite).filter { $0 == 0 || s[$0] != s[$0 - 1] }      // candidate c: predict positive from s[starts[c]] up
        // The candidates are judged `candidatesPerPass` at a time, each pass drawing the same resamples again (`seed`):
        // the gains of every candidate in every resample at once would take 16 KB per distinct score (1.6 GB at
        // 100,000), a pass takes at most candidatesPerPass * resamples Doubles (64 MB).
        var best = 0, bestGain = -Double.infinity, drawnAny = false
        var weight = [Int](repeating: 0, count: s.count)
        for first in stride(from: 0, to: starts.count, by: candidatesPerPass) {
            let block = first..<min(first + candidatesPerPass, starts.count)
            // gains[(c - first) * resamples + b]: candidate c's gain in the b-th resample that holds a positive
            var gains = [Double](repeating: 0, count: block.count * resamples)
            var drawn = 0
            var rng = RNG(seed: seed)
            for _ in 0..<resamples {
                for i in weight.indices { weight[i] = 0 }
                for _ in 0..<s.count { weight[Int(rng.next() % UInt64(s.count))] += 1 }
                var positives = 0, tp = 0, fp = 0
                for i in s.indices where y[i] { positives += weight[i] }
                guard positives > 0 else { continue }
                for i in 0..<finite { if y[i] { tp += weight[i] } else { fp += weight[i] } }
                // F1 = 2 TP / (2 TP + FP + FN), FN = positives - TP; the lowest candidate predicts every trial successful.
                func f1() -> Double { tp == 0 ? 0 : 2 * Double(tp) / Double(tp + fp + positives) }
                let everySuccessful = f1()
                var c = 0
                for i in 0..<finite where c < starts.count {
                    if starts[c] == i {
                        if block.contains(c) { gains[(c - first) * resamples + drawn] = f1() - everySuccessful }
                        c += 1
                        if c == block.upperBound { break }
                    }
                    if y[i] { tp -= weight[i] } else { fp -= weight[i] }
                }
                drawn += 1
            }
            guard drawn > 0 else { break }
            drawnAny = true
            let rank = Int(((1 - confidence) * Double(drawn - 1) + 1e-9).rounded(.down))     // 1 - 0.9 = 0.0999...
            for c in block {
                let row = (c - first) * resamples
                gains[row ..< row + drawn].sort()
                let q = gains[row + rank]
                if q > bestGain { bestGain = q; best = c }
            }
        }
        guard drawnAny else { return bestF1Threshold(scores, labels) }
        // Halfway to the next lower score: a trial's score moves in its last digits with the batch it is scored in
        // (padding changes the GEMMs' shapes), and a threshold equal to one trial's score would flip it.
        return cut(keeping: s[starts[best]], below: best > 0 ? s[starts[best] - 1] : nil)
    }

    /// Every metric on the whole set and as mean +- std over `resamples` subsets of `fraction` of the rows
    /// drawn without replacement (the paper's protocol: 10 resamples of 80 %), stratified by label: each subset holds
    /// round(fraction * n_c) of the n_c trials of each class c (at least one of a class the set has), so its share of
    /// successes is the whole set's up to that rounding. Unstratified, F1 of predicting every trial successful,
    /// 2p / (1 + p), and PR-AUC's chance level p moved with how many successes a draw happened to hold (phase I of the
    /// TOP test, 627 trials: about +- 0.003 on the mean of 10), so the means compared the scores and the draw at once.
    /// PR-AUC and ROC-AUC are averaged over the resamples that hold both classes (all of them when the set does; one
    /// class makes ROC-AUC undefined and PR-AUC 1 or undefined whatever the scores); each summary records how many
    /// resamples it is over (`MetricSummary.resamples`). With `ids` (the trials' NCT ids) each class's draw picks trials
    /// by their rank in id order, so the means do not depend on the order of the file's rows (by row position, a
    /// shuffled copy of phase I's 209 report trials moved the mean ROC-AUC by up to 0.014); without, rows as given.
    public static func report(_ scores: [Double], _ labels: [Int], ids: [String]? = nil, threshold: Double, resamples: Int = 10,
                              fraction: Double = 0.8, seed: UInt64 = 0) -> OutcomeMetrics {
        precondition(ids == nil || ids!.count == scores.count, "one id per score")
        func all(_ s: [Double], _ y: [Int]) -> [Double] {
            [f1(s, y, threshold: 0.5), f1(s, y, threshold: threshold), averagePrecision(s, y), rocAUC(s, y), accuracy(s, y, threshold: 0.5),
             f1(s, y, threshold: -.infinity)]     // the baseline: every trial predicted successful
        }
        var rng = RNG(seed: seed)
        let classes = [labels.indices.filter { labels[$0] == 1 }, labels.indices.filter { labels[$0] != 1 }]
            .map { rows in ids.map { ids in rows.sorted { (ids[$0], $0) < (ids[$1], $1) } } ?? rows }
        let kept = classes.map { $0.isEmpty ? 0 : max(1, Int((Double($0.count) * fraction).rounded())) }
        var samples: [[Double]] = []
        if !scores.isEmpty {
            for _ in 0..<resamples {
                // Each class's draw in turn from one generator; the kept rows in file order.
                let idx = zip(classes, kept).flatMap { rows, k in rng.permutation(rows.count).prefix(k).map { rows[$0] } }.sorted()
                var values = all(idx.map { scores[$0] }, idx.map { labels[$0] })
                let positives = idx.filter { labels[$0] == 1 }.count
                if positives == 0 || positives == idx.count { values[2] = .nan; values[3] = .nan }    // one class: no ranking to measure
                samples.append(values)
            }
        }
        // No trials (an empty "new diseases" subset): every metric undefined, not F1 = 0. One class: no ranking to
        // measure, PR-AUC as ROC-AUC (average precision would be 1 whatever the scores).
        var full = scores.isEmpty ? [Double](repeating: .nan, count: 6) : all(scores, labels)
        let positives = labels.filter { $0 == 1 }.count
        if positives == 0 || positives == labels.count { full[2] = .nan; full[3] = .nan }
        let summaries = full.indices.map { m -> MetricSummary in
            let v = samples.map { $0[m] }.filter { $0.isFinite }
            // Resamples that agree give their value and a spread of exactly 0 (the sum's rounding had left 1e-16).
            let same = !v.isEmpty && v.allSatisfy { $0 == v[0] }
            let mean = v.isEmpty ? Double.nan : same ? v[0] : v.reduce(0, +) / Double(v.count)
            // One resample gives no spread: undefined, not 0.
            let std = v.count < 2 ? Double.nan : same ? 0 : (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count - 1)).squareRoot()
            return MetricSummary(mean: mean, std: std, full: full[m], resamples: v.count)
        }
        return OutcomeMetrics(n: scores.count, positives: positives, threshold: threshold, f1: summaries[0],
                              f1AtThreshold: summaries[1], prAUC: summaries[2], rocAUC: summaries[3], accuracy: summaries[4],
                              f1AllSuccess: summaries[5], resampling: "stratified")
    }
}

/// One metric: mean and standard deviation over the resamples (subsets without replacement) where it is defined (`resamples` of them),
/// and its value on the whole set. Undefined values (one class only: NaN; a std over fewer than 2 resamples) are
/// nil, written as JSON null.
public struct MetricSummary: Codable, Equatable {
    public var mean: Double?, std: Double?, full: Double?
    /// How many resamples `mean` and `std` are over (nil: an evaluation written before this count).
    public var resamples: Int?
    public init(mean: Double, std: Double, full: Double, resamples: Int? = nil) {
        self.mean = mean.isFinite ? mean : nil; self.std = std.isFinite ? std : nil; self.full = full.isFinite ? full : nil
        self.resamples = resamples
    }
    enum CodingKeys: String, CodingKey { case mean, std, full, resamples }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        for (key, v) in [(CodingKeys.mean, mean), (.std, std), (.full, full)] {
            if let v { try c.encode(v, forKey: key) } else { try c.encodeNil(forKey: key) }
        }
        try c.encodeIfPresent(resamples, forKey: .resamples)
    }
}

/// Zero-shot retrieval of a pretrained model over the successful trials of an evaluation (SPEC 6; the pairs its
/// pretraining contrasts): the share of trials whose own f_DM scores best (top-1) or among the best 5 against their
/// criteria's f_C, and back, as pretraining's validation reports them (metrics.jsonl's val_top1_c2dm, ...).
public struct RetrievalSummary: Codable, Equatable {
    public var trials: Int
    public var top1C2dm, top5C2dm, top1Dm2c, top5Dm2c: Double
    /// 1 / trials: the top-1 share of a model that ranks at random.
    public var chanceTop1: Double
    public init(trials: Int, top1C2dm: Double, top5C2dm: Double, top1Dm2c: Double, top5Dm2c: Double) {
        self.trials = trials; self.top1C2dm = top1C2dm; self.top5C2dm = top5C2dm; self.top1Dm2c = top1Dm2c; self.top5Dm2c = top5Dm2c
        chanceTop1 = 1 / Double(max(trials, 1))
    }
    enum CodingKeys: String, CodingKey {
        case trials, top1C2dm = "top1_c2dm", top5C2dm = "top5_c2dm", top1Dm2c = "top1_dm2c", top5Dm2c = "top5_dm2c", chanceTop1 = "chance_top1"
    }
}

/// The outcome metrics of a set of scored trials (`Metrics.report`); JSON keys as `evaluate --json` writes them.
public struct OutcomeMetrics: Codable, Equatable {
    public var n: Int, positives: Int, threshold: Double
    public var f1: MetricSummary, f1AtThreshold: MetricSummary, prAUC: MetricSummary, rocAUC: MetricSummary, accuracy: MetricSummary
    /// F1 of predicting success for every trial, on the whole set and over the same resamples: the baseline to
    /// read F1 against (the resamples keep each class's share, up to rounding: their mean is within about 1 / n of the
    /// whole set's, and is what a mean F1 compares with); nil in an evaluation written before it.
    public var f1AllSuccess: MetricSummary?
    /// How the resamples were drawn: "stratified" (each keeps the fraction of either class); nil in an evaluation
    /// written before, whose resamples took the fraction of the rows at random (`compare` notes the difference).
    public var resampling: String?
    enum CodingKeys: String, CodingKey {
        case n, positives, threshold, f1, f1AtThreshold = "f1_at_threshold", prAUC = "pr_auc", rocAUC = "roc_auc", accuracy
        case f1AllSuccess = "f1_all_success", resampling
    }
}

/// What `evaluate --json` and `baseline --json` write: the metrics, the subset of trials with unseen disease
/// combinations, and where they came from.
public struct EvaluationReport: Codable {
    public var metrics: OutcomeMetrics
    public var newDiseases: OutcomeMetrics?
    public var data: String?, checkpoint: String?, method: String?
    public var zeroShot: Bool?
    /// Which trials were scored, with their labels: `trialsChecksum(ids:labels:)` (`compare` tells evaluations of
    /// the same trials from others by it, whatever path each named).
    public var trialsChecksum: String?
    /// Scored out of fold (`evaluate --out-of-fold`): each trial by the members that did not train on it.
    public var outOfFold: Bool?
    /// How many of the trials the scoring model(s) trained on or selected their epoch on (in-sample); absent when
    /// the checkpoint does not record its trials.
    public var inSampleTrials: Int?
    /// How many of the trials the pretraining's SCT corpus held (successful trials the model was pretrained on);
    /// absent when the checkpoint does not record its corpus (pretrained before version 8, or not pretrained).
    public var sctTrials: Int?
    /// A pretraining checkpoint's retrieval over the successful trials scored (zero-shot; absent for a fine-tuned one).
    public var retrieval: RetrievalSummary?
    public init(metrics: OutcomeMetrics, newDiseases: OutcomeMetrics? = nil, data: String? = nil, checkpoint: String? = nil,
                method: String? = nil, zeroShot: Bool? = nil) {
        self.metrics = metrics; self.newDiseases = newDiseases; self.data = data; self.checkpoint = checkpoint
        self.method = method; self.zeroShot = zeroShot
    }
    enum CodingKeys: String, CodingKey {
        case newDiseases = "new_diseases", data, checkpoint, method, zeroShot = "zero_shot", trialsChecksum = "trials_checksum"
        case outOfFold = "out_of_fold", inSampleTrials = "in_sample_trials", sctTrials = "sct_trials", retrieval
    }
    /// The metrics' keys at the top level, beside the others.
    public func encode(to encoder: Encoder) throws {
        try metrics.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(newDiseases, forKey: .newDiseases); try c.encodeIfPresent(data, forKey: .data)
        try c.encodeIfPresent(checkpoint, forKey: .checkpoint); try c.encodeIfPresent(method, forKey: .method)
        try c.encodeIfPresent(zeroShot, forKey: .zeroShot); try c.encodeIfPresent(trialsChecksum, forKey: .trialsChecksum)
        try c.encodeIfPresent(outOfFold, forKey: .outOfFold); try c.encodeIfPresent(inSampleTrials, forKey: .inSampleTrials)
        try c.encodeIfPresent(sctTrials, forKey: .sctTrials); try c.encodeIfPresent(retrieval, forKey: .retrieval)
    }

    /// A 64-bit checksum (hex) of the scored trials as "NCT id<TAB>label" lines in sorted order: the same for any file
    /// order or path, another for another trial or label.
    public static func trialsChecksum(ids: [String], labels: [Int]) -> String {
        let text = zip(ids, labels).map { "\($0)\t\($1)" }.sorted().joined(separator: "\n")
        return checksumHex(text)
    }

    /// Pretty-printed JSON, keys sorted.
    public func json() throws -> Data { try encodeJSON(self, pretty: true) }

    /// The metrics' keys at the top level; every other key, when there, holds its type (null and a value of another
    /// type are refused, not read as absent: a reader would drop what the key says).
    public init(from decoder: Decoder) throws {
        metrics = try OutcomeMetrics(from: decoder)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func value<T: Decodable>(_ key: CodingKeys) throws -> T? { c.contains(key) ? try c.decode(T.self, forKey: key) : nil }
        newDiseases = try value(.newDiseases); data = try value(.data); checkpoint = try value(.checkpoint)
        method = try value(.method); zeroShot = try value(.zeroShot); trialsChecksum = try value(.trialsChecksum)
        outOfFold = try value(.outOfFold); inSampleTrials = try value(.inSampleTrials); sctTrials = try value(.sctTrials)
        retrieval = try value(.retrieval)
    }

    /// The evaluation JSON at `file` (`evaluate --json`, `baseline --json`), with every value checked: whole trial
    /// counts within n, metrics and the threshold in [0, 1], spreads in [0, 1] over at least one resample, the known
    /// resampling. An error names the file and the key.
    public static func read(_ file: String) throws -> EvaluationReport {
        let bytes = try readRegularFile(file, what: "evaluation JSON", limit: 64 << 20)
        try refuseDuplicateJSONKeys(bytes, file: file)
        let report: EvaluationReport
        do {
            // The counts first, by name: Foundation's decoder calls 1.5 or 1e30 for an Int "not valid JSON".
            if let object = try? JSONSerialization.jsonObject(with: bytes) as? [String: Any] {
                for key in ["n", "positives"] {
                    if let v = object[key] as? NSNumber, !(v is Bool), Int(exactly: v.doubleValue) == nil || v.doubleValue.rounded() != v.doubleValue {
                        throw InputError(file: file, "key \(key) = \(v): expected a whole number of trials")
                    }
                }
            }
            report = try JSONDecoder().decode(EvaluationReport.self, from: bytes)
        }
        catch let e as InputError { throw e }
        catch { throw InputError(file: file, "not an evaluation JSON (cladmop evaluate --json): \(describeDecodingError(error, data: bytes))") }
        let r = report.metrics
        guard r.n >= 1 else { throw InputError(file: file, "key n = \(r.n): expected a trial count of at least 1 (evaluate scores at least one trial)") }
        try check(r, file: file)
        for (key, count) in [("in_sample_trials", report.inSampleTrials), ("sct_trials", report.sctTrials)] {
            if let count, !(0...r.n).contains(count) { throw InputError(file: file, "key \(key) = \(count): expected a count in [0, n = \(r.n)]") }
        }
        if let t = report.retrieval {
            guard t.trials >= 2 && t.trials <= r.positives else {
                throw InputError(file: file, "key retrieval.trials = \(t.trials): expected a count of successful trials in [2, positives = \(r.positives)]")
            }
            for (key, value) in [("top1_c2dm", t.top1C2dm), ("top5_c2dm", t.top5C2dm), ("top1_dm2c", t.top1Dm2c), ("top5_dm2c", t.top5Dm2c),
                                 ("chance_top1", t.chanceTop1)] where !(0...1).contains(value) {
                throw InputError(file: file, "key retrieval.\(key) = \(value): expected a share in [0, 1]")
            }
            if t.top1C2dm > t.top5C2dm || t.top1Dm2c > t.top5Dm2c {
                throw InputError(file: file, "key retrieval: a top-1 share above its top-5 share (\(t.top1C2dm) / \(t.top5C2dm), \(t.top1Dm2c) / \(t.top5Dm2c)): every top-1 match is a top-5 match")
            }
        }
        // The subset of new disease combinations: as many trials as the whole set at most, none at all possibly.
        if let nd = report.newDiseases {
            guard (0...r.n).contains(nd.n) else { throw InputError(file: file, "key new_diseases.n = \(nd.n): expected a count in [0, n = \(r.n)]") }
            try check(nd, file: file, prefix: "new_diseases.")
        }
        return report
    }

    /// The values of one set of metrics (`prefix` names a nested one in the errors): the successful trials within n,
    /// the resampling known, means and whole-set values in [0, 1], spreads in [0, 1] over at least one resample, the
    /// threshold a probability.
    static func check(_ r: OutcomeMetrics, file: String, prefix: String = "") throws {
        if let value = r.resampling, value != "stratified" {
            throw InputError(file: file, "key \(prefix)resampling = \(value.debugDescription.prefix(60)): expected \"stratified\" (or no key: an evaluation written before the resamples kept each class's share)")
        }
        guard (0...max(r.n, 0)).contains(r.positives) else { throw InputError(file: file, "key \(prefix)positives = \(r.positives): expected a count in [0, n = \(r.n)]") }
        for (name, m) in [("f1", r.f1), ("pr_auc", r.prAUC), ("roc_auc", r.rocAUC), ("accuracy", r.accuracy),
                          ("f1_at_threshold", r.f1AtThreshold)] + (r.f1AllSuccess.map { [("f1_all_success", $0)] } ?? []) {
            let key = prefix + name
            if let mean = m.mean, !(0...1).contains(mean) { throw InputError(file: file, "key \(key).mean = \(mean): expected a value in [0, 1]") }
            // The spread of values in [0, 1] is at most 0.5 (population) or 0.5 * sqrt(N / (N - 1)) <= 0.71 (sample).
            if let std = m.std, !(std >= 0 && std <= 1) { throw InputError(file: file, "key \(key).std = \(std): expected a spread in [0, 1] (of values in [0, 1])") }
            if let full = m.full, !(0...1).contains(full) { throw InputError(file: file, "key \(key).full = \(full): expected a value in [0, 1]") }
            if let count = m.resamples, count < 0 { throw InputError(file: file, "key \(key).resamples = \(count): expected a count of at least 0") }
            if m.resamples == 0 && (m.mean != nil || m.std != nil) {
                throw InputError(file: file, "key \(key).resamples = 0 with a mean or std: expected null mean and std (no resample to take them over) or a count of at least 1")
            }
        }
        guard (0...1).contains(r.threshold) else {
            throw InputError(file: file, "key \(prefix)threshold = \(r.threshold): expected a probability in [0, 1] (the decision threshold of the scores)")
        }
    }
}
