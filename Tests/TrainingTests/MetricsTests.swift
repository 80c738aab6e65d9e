import Foundation
import Reporting
import Support
import XCTest

/// Metric implementations against values computed by hand (scikit-learn's definitions).
final class MetricsTests: XCTestCase {
    func testROCAUCWithTies() {
        // Pairs (pos, neg): (0.8 > 0.3), (0.8 > 0.5), (0.5 = 0.5) -> 1/2, (0.5 > 0.3): (1 + 1 + 0.5 + 1) / 4.
        XCTAssertEqual(Metrics.rocAUC([0.8, 0.5, 0.5, 0.3], [1, 1, 0, 0]), 0.875, accuracy: 1e-12)
        XCTAssertEqual(Metrics.rocAUC([0.1, 0.9], [1, 0]), 0)
        XCTAssertEqual(Metrics.rocAUC([0.2, 0.2, 0.2], [1, 0, 1]), 0.5)
        XCTAssertTrue(Metrics.rocAUC([0.1, 0.2], [1, 1]).isNaN, "one class only: undefined")
        // A NaN score ranks lowest: pairs (0.7 > 0.3), (0.7 > NaN), (NaN < 0.3), (NaN = NaN) -> 2.5 / 4.
        XCTAssertEqual(Metrics.rocAUC([0.7, 0.3, .nan, .nan], [1, 0, 1, 0]), 0.625, accuracy: 1e-12)
    }

    func testAveragePrecision() {
        // sklearn: average_precision_score([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) = (1 * 0.5 + 2/3 * 0.5) = 0.8333
        XCTAssertEqual(Metrics.averagePrecision([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]), 0.5 + 0.5 * 2 / 3, accuracy: 1e-12)
        // All scores tied: one threshold, precision = base rate.
        XCTAssertEqual(Metrics.averagePrecision([0.5, 0.5, 0.5, 0.5], [1, 0, 0, 0]), 0.25, accuracy: 1e-12)
        XCTAssertEqual(Metrics.averagePrecision([0.3], [1]), 1)
        XCTAssertTrue(Metrics.averagePrecision([0.3, 0.4], [0, 0]).isNaN)
        // NaN lowest: [0.9 (1), 0.2 (0), NaN (1)] -> 1 * 0.5 + 2/3 * 0.5
        XCTAssertEqual(Metrics.averagePrecision([.nan, 0.9, 0.2], [1, 1, 0]), 0.5 + 0.5 * 2 / 3, accuracy: 1e-12)
    }

    func testF1AccuracyAndThreshold() {
        let s = [0.9, 0.6, 0.4, 0.2], y = [1, 0, 1, 0]
        // threshold 0.5: predictions 1,1,0,0 -> tp 1, fp 1, fn 1 -> F1 = 2/(2+1+1) = 0.5; accuracy 2/4.
        XCTAssertEqual(Metrics.f1(s, y, threshold: 0.5), 0.5, accuracy: 1e-12)
        XCTAssertEqual(Metrics.accuracy(s, y, threshold: 0.5), 0.5, accuracy: 1e-12)
        XCTAssertEqual(Metrics.f1(s, [0, 0, 0, 0], threshold: 0.5), 0)
        // Best cut at 0.4: predictions 1,1,1,0 -> tp 2, fp 1 -> F1 = 4/5; placed halfway down to the next score, 0.2.
        XCTAssertEqual(Metrics.bestF1Threshold(s, y), 0.3, accuracy: 1e-15)
        XCTAssertEqual(Metrics.f1(s, y, threshold: 0.4), 0.8, accuracy: 1e-12)
    }

    func testBestF1ThresholdSweepMatchesEveryThresholdTried() {
        // The sweep against trying every distinct score with Metrics.f1 (scores on a coarse grid: many ties), the
        // tie-break toward 0.5 included (tried highest first, as the sweep: of two scores as far from 0.5 with the same
        // F1, such as 0.45 and 0.55, both keep the higher).
        var rng = RNG(seed: 17)
        for _ in 0..<50 {
            let n = 1 + rng.int(below: 60)
            let s = (0..<n).map { _ in Double(rng.int(below: 21)) / 20 }, y = (0..<n).map { _ in rng.int(below: 2) }
            var best = 0.5, bestF1 = -1.0
            for t in Set(s).sorted(by: >) {
                let f = Metrics.f1(s, y, threshold: t)
                if f > bestF1 || (f == bestF1 && abs(t - 0.5) < abs(best - 0.5)) { bestF1 = f; best = t }
            }
            let sweep = Metrics.bestF1Threshold(s, y)
            XCTAssertEqual(Metrics.f1(s, y, threshold: sweep), bestF1, accuracy: 1e-12, "\(s) \(y)")
            // The same cut as the reference's score, the tie-break toward 0.5 included: halfway down to the next lower
            // score, or 0 when the reference predicts every trial successful.
            XCTAssertEqual(s.map { $0 >= sweep }, s.map { $0 >= best }, "the same trials cut: \(s) \(y)")
            let lower = s.filter { $0 < best }.max()
            XCTAssertEqual(sweep, lower.map { ($0 + best) / 2 } ?? 0, accuracy: 1e-15, "halfway below the cut: \(s) \(y)")
        }
        // A NaN score (a diverged model) ends the sweep like any other score instead of stalling it, and is never
        // the next lower score: 0.7 keeps one success and no failure (F1 2/3), halfway down to 0.3.
        XCTAssertEqual(Metrics.bestF1Threshold([.nan, 0.3, 0.7], [1, 0, 1]), 0.5, accuracy: 1e-15)
        XCTAssertEqual(Metrics.bestF1Threshold([.nan, 0.7], [0, 1]), 0, "every finite score kept: 0")
        XCTAssertEqual(Metrics.bestF1Threshold([.nan], [1]), 0.5, "no finite score: 0.5")
        // Adjacent doubles: the cut cannot fall between them, so it is the kept score itself.
        XCTAssertEqual(Metrics.bestF1Threshold([0.6, 0.6.nextDown], [1, 0]), 0.6)
        for seed in 0..<20 as Range<UInt64> {
            let t = Metrics.riskAverseF1Threshold([.nan, 0.3, 0.7, 0.2], [1, 0, 1, 0], confidence: 0.5, resamples: 20, seed: seed)
            XCTAssertTrue([0, 0.25, 0.5].contains(t), "NaN is never a threshold (cuts are halfway between scores): \(t)")
        }
    }

    func testRiskAverseF1ThresholdGainsOverAllSuccessOrPredictsSuccess() {
        // Perfectly separated classes: the lowest positive's score gains over all-success in every resample that
        // holds a negative, any higher one loses trials; the lowest score (every trial successful) gains nothing.
        let s = [0.05, 0.1, 0.15, 0.2, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95], y = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
        XCTAssertEqual(Metrics.riskAverseF1Threshold(s, y, confidence: 0.9), 0.45, accuracy: 1e-15, "halfway between 0.2 and 0.7")
        // The sweep against a brute-force reference that draws the same resamples, builds each one and computes F1
        // at every candidate with Metrics.f1 (scores on a coarse grid: many ties).
        func reference(_ s: [Double], _ y: [Int], share: (Int, Int), resamples: Int, seed: UInt64) -> Double {
            let order = s.indices.sorted { s[$0] != s[$1] ? s[$0] < s[$1] : y[$0] < y[$1] }
            let ss = order.map { s[$0] }, yy = order.map { y[$0] }, candidates = Set(ss).sorted()
            var rng = RNG(seed: seed), gains: [Double: [Double]] = [:]
            for _ in 0..<resamples {
                let idx = (0..<ss.count).map { _ in Int(rng.next() % UInt64(ss.count)) }
                let rs = idx.map { ss[$0] }, ry = idx.map { yy[$0] }
                guard ry.contains(1) else { continue }
                let all = Metrics.f1(rs, ry, threshold: -.infinity)
                for t in candidates { gains[t, default: []].append(Metrics.f1(rs, ry, threshold: t) - all) }
            }
            let rank = (gains[candidates[0]]!.count - 1) * share.0 / share.1     // exact: (1 - C) (B - 1), floor
            var best = candidates[0], bestGain = -Double.infinity
            for t in candidates where gains[t]!.sorted()[rank] > bestGain { bestGain = gains[t]!.sorted()[rank]; best = t }
            // no cut: every trial successful; a cut: halfway to the next lower score
            return best == candidates[0] ? min(0, best) : (candidates[candidates.firstIndex(of: best)! - 1] + best) / 2
        }
        var rng = RNG(seed: 5)
        for trial in 0..<30 {
            let n = 8 + rng.int(below: 40)
            let s = (0..<n).map { _ in Double(rng.int(below: 11)) / 10 }
            let y = s.map { rng.uniform() < 0.5 + 0.4 * $0 ? 1 : 0 }
            // 1 - C as a fraction; 11 resamples: (1 - 0.9) * 10 is rank 1, which floating point rounds down to 0
            let (confidence, share) = [(0.5, (1, 2)), (0.75, (1, 4)), (0.9, (1, 10))][trial % 3]
            XCTAssertEqual(Metrics.riskAverseF1Threshold(s, y, confidence: confidence, resamples: 11, seed: UInt64(trial)),
                           reference(s, y, share: share, resamples: 11, seed: UInt64(trial)), "\(s) \(y) \(confidence)")
            // Judged a few candidates per pass over the resamples (the memory bound of large sets): the same threshold.
            for perPass in 1...3 {
                XCTAssertEqual(Metrics.riskAverseF1Threshold(s, y, confidence: confidence, resamples: 11, seed: UInt64(trial), candidatesPerPass: perPass),
                               reference(s, y, share: share, resamples: 11, seed: UInt64(trial)), "\(s) \(y) \(confidence), \(perPass) per pass")
            }
        }
        // With a NaN score, and without any positive (no resample holds one: the F1-best threshold), one candidate per pass too.
        for seed in 0..<5 as Range<UInt64> {
            XCTAssertEqual(Metrics.riskAverseF1Threshold([.nan, 0.3, 0.7, 0.2], [1, 0, 1, 0], confidence: 0.5, resamples: 20, seed: seed, candidatesPerPass: 1),
                           Metrics.riskAverseF1Threshold([.nan, 0.3, 0.7, 0.2], [1, 0, 1, 0], confidence: 0.5, resamples: 20, seed: seed))
        }
        XCTAssertEqual(Metrics.riskAverseF1Threshold([0.3, 0.7, 0.2], [0, 0, 0], confidence: 0.9, candidatesPerPass: 1),
                       Metrics.bestF1Threshold([0.3, 0.7, 0.2], [0, 0, 0]))
        // A positive-heavy set (75 % successful) whose 12 lowest scores hold 7 failures and 5 successes, mixed: on the
        // whole set the F1-best threshold cuts them off (F1 above all-success), but the gain does not hold in 90 % of
        // the resamples, so at confidence 0.9 every trial is predicted successful; at 0.5 (the median gain) the cut stays.
        var scores: [Double] = [], labels: [Int] = []
        for (i, label) in [0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1].enumerated() { scores.append(0.1 + 0.001 * Double(i)); labels.append(label) }
        for i in 0..<108 { scores.append(0.5 + 0.004 * Double(i)); labels.append(i % 5 == 0 ? 0 : 1) } // 80 % successful
        let cut = Metrics.bestF1Threshold(scores, labels)
        XCTAssertGreaterThan(cut, 0.1)
        XCTAssertGreaterThan(Metrics.f1(scores, labels, threshold: cut), Metrics.f1(scores, labels, threshold: 0))
        let cautious = Metrics.riskAverseF1Threshold(scores, labels, confidence: 0.9)
        XCTAssertEqual(cautious, 0, "no threshold gains in 90 % of the resamples: every trial predicted successful, new ones too")
        XCTAssertGreaterThan(Metrics.riskAverseF1Threshold(scores, labels, confidence: 0.5), 0.1, "the median gain keeps a cut")
        // The same threshold whatever order the trials come in (resamples index the trials in score order, tied
        // scores by label): scores on a coarse grid, so that many ties hold both labels.
        let tied = scores.map { ($0 * 20).rounded() / 20 }
        var order = RNG(seed: 11)
        for confidence in [0.5, 0.75, 0.9] {
            let t = Metrics.riskAverseF1Threshold(tied, labels, confidence: confidence, resamples: 7, seed: 3)
            for _ in 0..<3 {
                let p = order.permutation(tied.count)
                XCTAssertEqual(Metrics.riskAverseF1Threshold(p.map { tied[$0] }, p.map { labels[$0] }, confidence: confidence, resamples: 7, seed: 3), t,
                               "independent of the order")
            }
        }
    }

    func testRiskAverseF1ThresholdDoesNotTrustACutOfTwoTrials() {
        // 100 trials whose two lowest scores are failures and whose next ones mix both labels (runs of 5 successes and
        // 4 failures: no cut among them gains): cutting the two gains in a resample only when it draws one of them,
        // which 13.3 % of the resamples do not (0.98^100), so that gain does not hold in 90 % of them and no cut is
        // made. With 200 resamples the 10 % quantile is the 20th lowest of 200, and a draw with 19 or fewer such
        // resamples (6.7 % of the seeds; 8 of these 100) keeps the cut.
        var scores = [0.02, 0.04], labels = [0, 0]
        for i in 0..<98 { scores.append(0.1 + 0.008 * Double(i)); labels.append(i % 9 < 5 ? 1 : 0) }
        let cuts = (0..<100 as Range<UInt64>).filter { Metrics.riskAverseF1Threshold(scores, labels, confidence: 0.9, seed: $0) != 0 }
        XCTAssertEqual(cuts, [], "seeds that cut")
        XCTAssertEqual(Metrics.riskAverseF1Threshold(scores, labels, confidence: 0.85), 0.07, accuracy: 1e-15, "at 0.85 the cut's gain holds (halfway between 0.04 and 0.1)")
    }

    func testBootstrapReportShape() {
        let s = (0..<50).map { Double($0) / 50 }, y = (0..<50).map { $0 % 3 == 0 ? 1 : 0 }
        let r = Metrics.report(s, y, threshold: 0.5)
        XCTAssertEqual(r.n, 50)
        for m in [r.f1, r.prAUC, r.rocAUC, r.accuracy] { XCTAssertNotNil(m.mean); XCTAssertNotNil(m.std) }
        // Deterministic for a given seed.
        XCTAssertEqual(Metrics.report(s, y, threshold: 0.5).rocAUC, r.rocAUC)
        // JSON keys as evaluate --json writes them; an undefined metric (one class) is null, not a crash.
        let one = Metrics.report([0.2, 0.7], [1, 1], threshold: 0.5)
        let json = try! JSONSerialization.jsonObject(with: EvaluationReport(metrics: one, data: "x.csv").json()) as! [String: Any]
        XCTAssertEqual(Set(json.keys), ["n", "positives", "threshold", "f1", "f1_at_threshold", "pr_auc", "roc_auc", "accuracy", "f1_all_success", "resampling", "data"])
        XCTAssertTrue((json["roc_auc"] as! [String: Any])["mean"] is NSNull)
        // The trials' checksum: the same for any order of the rows, another for another trial or label.
        let sum = EvaluationReport.trialsChecksum(ids: ["NCT1", "NCT2"], labels: [1, 0])
        XCTAssertEqual(EvaluationReport.trialsChecksum(ids: ["NCT2", "NCT1"], labels: [0, 1]), sum)
        XCTAssertNotEqual(EvaluationReport.trialsChecksum(ids: ["NCT1", "NCT2"], labels: [1, 1]), sum)
        XCTAssertNotEqual(EvaluationReport.trialsChecksum(ids: ["NCT1", "NCT3"], labels: [1, 0]), sum)
    }

    /// The resamples are stratified by label: each holds round(0.8 n_c) trials of each class c (at least one), so
    /// F1 of predicting every trial successful, 2P' / (2P' + N'), is the same in every resample, and a set with one
    /// failure has PR-AUC and ROC-AUC in all 10 (unstratified, a resample without the failure had no ranking to
    /// measure: they were over fewer). Reference: the counts' arithmetic, and the metrics of the resamples
    /// enumerated (with one failure among 10 trials, each resample keeps it and drops 2 of the 9 successes).
    func testResamplesAreStratifiedByLabel() {
        let s = [0.9, 0.2, 0.8, 0.7, 0.95, 0.6, 0.5, 0.4, 0.85, 0.3], y = [1, 1, 1, 1, 1, 1, 0, 1, 1, 1]
        let r = Metrics.report(s, y, threshold: 0.5)
        XCTAssertEqual(r.f1.resamples, 10); XCTAssertEqual(r.accuracy.resamples, 10)
        XCTAssertEqual(r.prAUC.resamples, 10); XCTAssertEqual(r.rocAUC.resamples, 10)
        // 9 successes: round(7.2) = 7 kept, the failure kept: F1 of all-success 14 / 15 in every resample.
        XCTAssertEqual(r.f1AllSuccess?.mean ?? 0, 14.0 / 15, accuracy: 1e-12); XCTAssertEqual(r.f1AllSuccess?.std ?? 1, 0, accuracy: 1e-12)
        XCTAssertEqual(r.f1AllSuccess?.full ?? 0, 2 * 0.9 / 1.9, accuracy: 1e-12)
        // Every resample's ROC-AUC is one of the C(9, 2) = 36 subsets' values: the mean lies within their range.
        let successes = (0..<10).filter { $0 != 6 }
        var rocs: [Double] = []
        for a in 0..<9 { for b in (a + 1)..<9 {
            let idx = (0..<10).filter { $0 != successes[a] && $0 != successes[b] }
            rocs.append(Metrics.rocAUC(idx.map { s[$0] }, idx.map { y[$0] }))
        } }
        XCTAssertEqual(rocs.count, 36)
        XCTAssertTrue((rocs.min()! ... rocs.max()!).contains(r.rocAUC.mean!), "\(r.rocAUC.mean!) outside \(rocs.min()!)...\(rocs.max()!)")
        // Drawn at random within each class: the resamples differ (the first 7 successes every time would give std 0).
        XCTAssertGreaterThan(r.rocAUC.std ?? 0, 0.01)
        XCTAssertEqual(r.resampling, "stratified")
        XCTAssertNil(rankingResamplesNote(r, subset: "all"))
        // 50 trials, 17 successes and 33 failures: round(13.6) = 14 and round(26.4) = 26 in each resample.
        let big = Metrics.report((0..<50).map { Double($0) / 50 }, (0..<50).map { $0 % 3 == 0 ? 1 : 0 }, threshold: 0.5)
        XCTAssertEqual(big.f1AllSuccess?.mean ?? 0, 28.0 / 54, accuracy: 1e-12); XCTAssertEqual(big.f1AllSuccess?.std ?? 1, 0, accuracy: 1e-12)
        XCTAssertNil(rankingResamplesNote(big, subset: "all"))
        // A set of one class: PR-AUC and ROC-AUC undefined in every resample, and the note says why.
        let oneClass = Metrics.report([0.1, 0.9, 0.4], [1, 1, 1], threshold: 0.5)
        XCTAssertEqual(oneClass.rocAUC.resamples, 0); XCTAssertEqual(oneClass.f1.resamples, 10)
        XCTAssertEqual(rankingResamplesNote(oneClass, subset: "new diseases"), "note: PR-AUC and ROC-AUC of \"new diseases\" are undefined: its trials are all of one class")
        // One defined resample has a mean and no spread (it was std 0); the table says n/a for it.
        let one = MetricSummary(mean: 0.7, std: .nan, full: 0.7, resamples: 1)
        XCTAssertNil(one.std)
        XCTAssertEqual(meanStd(one, digits: 3, pm: "±"), "0.700 ± n/a")
        let json = try! JSONSerialization.jsonObject(with: EvaluationReport(metrics: r, data: "x.csv").json()) as! [String: Any]
        XCTAssertEqual((json["roc_auc"] as! [String: Any])["resamples"] as? Int, 10)
        // report.md: the note after the whole table (the published rows stay in it; Launch/main prints up to its end).
        let path = NSTemporaryDirectory() + "cladmop-note-\(getpid()).md"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try! writeOutcomeReport(EvaluationReport(metrics: oneClass, data: "x.csv"), path: path, phase: 1, data: "x.csv", checkpoint: "run")
        let md = try! String(contentsOfFile: path, encoding: .utf8)
        let table = md.components(separatedBy: "| Method")[1].components(separatedBy: "\n\n")[0]
        XCTAssertTrue(table.contains("CLaDMoP (published"), md)
        XCTAssertTrue(md.contains("published, paper's Table 2) | .713 ± .019 | | .680 ± .016 | .642 ± .015 | |\n\nNote: PR-AUC and ROC-AUC of \"all\" are undefined"), md)
        XCTAssertTrue(md.contains("| every trial predicted successful (the F1 baseline, same resamples) | "), md)
        // A set of one class: PR-AUC is undefined as ROC-AUC is (average precision would be 1 whatever the scores).
        XCTAssertNil(oneClass.prAUC.full); XCTAssertNil(oneClass.prAUC.mean); XCTAssertEqual(oneClass.f1.full, 0.5)
    }

    /// The resamples draw trials, not row positions: the same trials in another row order (with their NCT ids) give the
    /// same means and spreads to the bit (by position, a shuffled copy of phase I's report trials had moved the mean
    /// ROC-AUC by up to 0.014). Reference: the rows in id order. Without ids the draw is by position, and the same
    /// shuffle moves the means (so this test can fail). Resamples that agree give their value and a spread of exactly 0.
    func testResamplesDoNotDependOnTheRowOrder() {
        let n = 60, s = (0..<n).map { Double(($0 * 37) % 61) / 61 }, y = (0..<n).map { $0 % 5 < 3 ? 1 : 0 }
        let ids = (0..<n).map { "NCT" + String(format: "%08d", 1000 + 7 * $0) }
        let sorted = Metrics.report(s, y, ids: ids, threshold: 0.4)
        let order = (0..<n).map { ($0 * 17) % n }, at = { (a: [Double]) in order.map { a[$0] } }   // a fixed shuffle
        let shuffled = Metrics.report(at(s), order.map { y[$0] }, ids: order.map { ids[$0] }, threshold: 0.4)
        func values(_ r: OutcomeMetrics) -> [Double?] {
            [r.f1, r.f1AtThreshold, r.prAUC, r.rocAUC, r.accuracy].flatMap { [$0.mean, $0.std, $0.full] }
        }
        XCTAssertEqual(values(shuffled), values(sorted))
        XCTAssertEqual(values(Metrics.report(s, y, threshold: 0.4)), values(sorted), "rows given in id order are drawn as before")
        XCTAssertNotEqual(values(Metrics.report(at(s), order.map { y[$0] }, threshold: 0.4)), values(sorted), "by position, a shuffle moves the means")
        // Predicting every trial successful: the same F1 in every stratified resample, so its spread is 0, not 1e-16.
        XCTAssertEqual(sorted.f1AllSuccess?.std, 0)
        XCTAssertEqual(sorted.f1AllSuccess?.mean ?? 0, 2.0 * 29 / (2 * 29 + 19), accuracy: 1e-15)   // round(0.8 * 36) = 29 of 36 successes, 19 of 24 failures
    }

    /// No trials (an empty "new diseases" subset): every value undefined (JSON null), F1 included; it was full = 0.
    func testEmptySetHasNoMetrics() {
        let r = Metrics.report([], [], threshold: 0.5)
        XCTAssertEqual(r.n, 0)
        for m in [r.f1, r.f1AtThreshold, r.prAUC, r.rocAUC, r.accuracy] { XCTAssertNil(m.mean); XCTAssertNil(m.std); XCTAssertNil(m.full) }
    }

    /// The markdown report links roc/pr curves only when they were written with it into its folder (evaluate --plots), and
    /// names paths holding line breaks or backticks in one code span.
    func testReportLinksOnlyCurvesBesideIt() throws {
        let dir = NSTemporaryDirectory() + "cladmop-report-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = (0..<20).map { Double($0) / 20 }, y = (0..<20).map { $0 % 2 }
        let report = EvaluationReport(metrics: Metrics.report(s, y, threshold: 0.5), data: "x.csv")
        try writeOutcomeReport(report, path: dir + "/alone.md", phase: 1, data: "x.csv", checkpoint: "run")
        XCTAssertFalse(try String(contentsOfFile: dir + "/alone.md", encoding: .utf8).contains("roc."))
        let curves = try writeCurves(scores: s, labels: y, dir: dir)
        // Curves in its folder that were not written with it (an earlier evaluation's) are not linked.
        try writeOutcomeReport(report, path: dir + "/later.md", phase: 1, data: "x.csv", checkpoint: "run")
        XCTAssertFalse(try String(contentsOfFile: dir + "/later.md", encoding: .utf8).contains("roc."))
        try writeOutcomeReport(report, path: dir + "/beside.md", phase: 1, data: "x.csv", checkpoint: "run", curves: curves)
        XCTAssertTrue(try String(contentsOfFile: dir + "/beside.md", encoding: .utf8).contains("roc."))
        // Paths with a line break or backticks stay one code span on one line.
        try writeOutcomeReport(report, path: dir + "/odd.md", phase: nil, data: "a\nb.csv", checkpoint: "r`u``n")
        let odd = try String(contentsOfFile: dir + "/odd.md", encoding: .utf8)
        XCTAssertTrue(odd.contains("Checkpoint ```r`u``n```, evaluated on `a\\nb.csv` ("), odd)
        XCTAssertEqual(markdownCode("`x"), "`` `x ``")
        XCTAssertEqual(markdownCode("runs/main"), "`runs/main`")
    }

    /// The report says where its trials stand to the model, as eval.json and `compare` do: scored out of fold, trials
    /// that trained or selected it (in-sample), trials of its pretraining corpus; nothing when none applies.
    func testReportSaysWhenItsTrialsAreNotOutOfSample() throws {
        let dir = NSTemporaryDirectory() + "cladmop-report-notes-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = (0..<20).map { Double($0) / 20 }, y = (0..<20).map { $0 % 2 }
        var report = EvaluationReport(metrics: Metrics.report(s, y, threshold: 0.5), data: "x.csv")
        report.outOfFold = false; report.inSampleTrials = 0; report.sctTrials = 0
        try writeOutcomeReport(report, path: dir + "/clean.md", phase: 1, data: "x.csv", checkpoint: "run")
        let clean = try String(contentsOfFile: dir + "/clean.md", encoding: .utf8)
        for phrase in ["out of fold", "In-sample", "SCT corpus"] { XCTAssertFalse(clean.contains(phrase), phrase) }
        report.outOfFold = true; report.inSampleTrials = 7; report.sctTrials = 3
        try writeOutcomeReport(report, path: dir + "/noted.md", phase: 1, data: "x.csv", checkpoint: "run")
        let noted = try String(contentsOfFile: dir + "/noted.md", encoding: .utf8)
        XCTAssertTrue(noted.contains("Scored out of fold: each trial by the members that did not train on it"), noted)
        XCTAssertTrue(noted.contains("whose epochs 7 of the 20 trials selected"), noted)
        report.outOfFold = false
        try writeOutcomeReport(report, path: dir + "/insample.md", phase: 1, data: "x.csv", checkpoint: "run")
        let inSample = try String(contentsOfFile: dir + "/insample.md", encoding: .utf8)
        XCTAssertTrue(inSample.contains("**In-sample:** 7 of the 20 trials trained the model(s) or selected their epoch"), inSample)
        report.outOfFold = true
        XCTAssertTrue(noted.contains("3 of the 20 trials were in the pretraining's SCT corpus"), noted)
        // Out of fold every trial selected its member's epoch (in_sample_trials = n): the out-of-fold paragraph says so,
        // not an "In-sample" line claiming they trained the model.
        report.inSampleTrials = 20
        try writeOutcomeReport(report, path: dir + "/oof.md", phase: 1, data: "x.csv", checkpoint: "run")
        let oof = try String(contentsOfFile: dir + "/oof.md", encoding: .utf8)
        XCTAssertTrue(oof.contains("Scored out of fold") && !oof.contains("In-sample"), oof)
        // Trials a run kept out of selection (finetune --report-trials): out of fold and out of selection.
        report.inSampleTrials = 0
        try writeOutcomeReport(report, path: dir + "/reported.md", phase: 1, data: "x.csv", checkpoint: "run")
        let reported = try String(contentsOfFile: dir + "/reported.md", encoding: .utf8)
        XCTAssertTrue(reported.contains("and that did not select their epoch on it either"), reported)
    }

    /// Curves of trials of one class are titled "undefined", not "AUC nan"; two classes give the value.
    func testCurveTitlesSayWhenAMetricIsUndefined() throws {
        let dir = NSTemporaryDirectory() + "cladmop-curves-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Only failed trials, and only successful ones (average precision would be 1 whatever the scores: a probe saw
        // "AP 1.000" over a table saying n/a).
        for (folder, labels) in [("/failed", [0, 0]), ("/successful", [1, 1])] {
            try writeCurves(scores: [0.3, 0.7], labels: labels, dir: dir + folder)
            for name in ["roc.svg", "pr.svg"] {
                let svg = try String(contentsOfFile: dir + folder + "/" + name, encoding: .utf8)
                XCTAssertTrue(svg.contains("undefined: one class only") && !svg.lowercased().contains("nan"), folder + "/" + name)
            }
        }
        // Another folder: in this test process a deleted input of an earlier test may have left its inode to roc.svg,
        // and the guard against overwriting inputs (FilesRead) would then refuse to replace it.
        try writeCurves(scores: [0.3, 0.7], labels: [0, 1], dir: dir + "/both")
        XCTAssertTrue(try String(contentsOfFile: dir + "/both/roc.svg", encoding: .utf8).contains("ROC (AUC 1.000)"))
        XCTAssertTrue(try String(contentsOfFile: dir + "/both/pr.svg", encoding: .utf8).contains("AP 1.000"))
    }
}
