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
    }

    func testAveragePrecision() {
        // sklearn: average_precision_score([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) = (1 * 0.5 + 2/3 * 0.5) = 0.8333
        XCTAssertEqual(Metrics.averagePrecision([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]), 0.5 + 0.5 * 2 / 3, accuracy: 1e-12)
        // All scores tied: one threshold, precision = base rate.
        XCTAssertEqual(Metrics.averagePrecision([0.5, 0.5, 0.5, 0.5], [1, 0, 0, 0]), 0.25, accuracy: 1e-12)
        XCTAssertEqual(Metrics.averagePrecision([0.3], [1]), 1)
        XCTAssertTrue(Metrics.averagePrecision([0.3, 0.4], [0, 0]).isNaN)
    }

    func testF1AccuracyAndThreshold() {
        let s = [0.9, 0.6, 0.4, 0.2], y = [1, 0, 1, 0]
        // threshold 0.5: predictions 1,1,0,0 -> tp 1, fp 1, fn 1 -> F1 = 2/(2+1+1) = 0.5; accuracy 2/4.
        XCTAssertEqual(Metrics.f1(s, y, threshold: 0.5), 0.5, accuracy: 1e-12)
        XCTAssertEqual(Metrics.accuracy(s, y, threshold: 0.5), 0.5, accuracy: 1e-12)
        XCTAssertEqual(Metrics.f1(s, [0, 0, 0, 0], threshold: 0.5), 0)
        // Best threshold 0.4: predictions 1,1,1,0 -> tp 2, fp 1 -> F1 = 4/5.
        XCTAssertEqual(Metrics.bestF1Threshold(s, y), 0.4)
        XCTAssertEqual(Metrics.f1(s, y, threshold: 0.4), 0.8, accuracy: 1e-12)
    }

    func testBestF1ThresholdSweepMatchesEveryThresholdTried() {
        // The sweep against trying every distinct score (scores on a coarse grid: many ties), the tie-break
        // toward 0.5 included (scores on a grid of 1/20 ... 19/20 without 0.5's mirror pairs being equidistant
        // matters only when two thresholds tie on F1 and on distance; then both give the same F1, checked below).
        var rng = RNG(seed: 17)
        for _ in 0..<50 {
            let n = 1 + rng.int(below: 60)
            let s = (0..<n).map { _ in Double(rng.int(below: 21)) / 20 }, y = (0..<n).map { _ in rng.int(below: 2) }
            var best = 0.5, bestF1 = -1.0
            for t in Set(s).sorted() {
                let f = Metrics.f1(s, y, threshold: t)
                if f > bestF1 || (f == bestF1 && abs(t - 0.5) < abs(best - 0.5)) { bestF1 = f; best = t }
            }
            let sweep = Metrics.bestF1Threshold(s, y)
            XCTAssertEqual(Metrics.f1(s, y, threshold: sweep), bestF1, accuracy: 1e-12, "\(s) \(y)")
            XCTAssertEqual(abs(sweep - 0.5), abs(best - 0.5), accuracy: 1e-12, "the tie-break toward 0.5: \(s) \(y)")
        }
        // A NaN score (a diverged model) ends the sweep like any other score instead of stalling it.
        XCTAssertEqual(Metrics.bestF1Threshold([.nan, 0.3, 0.7], [1, 0, 1]), 0.7)
        XCTAssertFalse(Metrics.baggedF1Threshold([.nan, 0.3, 0.7, 0.2], [1, 0, 1, 0], resamples: 20).isNaN)
    }

    func testBaggedF1ThresholdIsTheMedianOfResampledBestThresholds() {
        // Perfectly separated classes with a wide gap: every resample's best threshold is the score of its lowest
        // positive, so the median lies among the lowest positives' scores, never in the gap or among negatives.
        let s = [0.05, 0.1, 0.15, 0.2, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95], y = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
        XCTAssertEqual(Metrics.bestF1Threshold(s, y), 0.7)
        let bagged = Metrics.baggedF1Threshold(s, y)
        XCTAssertTrue(bagged >= 0.7 && bagged <= 0.8, "\(bagged)")
        XCTAssertEqual(bagged, Metrics.baggedF1Threshold(s, y), "deterministic for a seed")
        // Overlapping classes (80 trials, weak signal): the same threshold whatever order the trials come in (the
        // resamples index the trials in score order), and near-optimal on the whole set (F1 within 0.05 of the best's).
        var rng = RNG(seed: 11)
        let s2 = (0..<80).map { _ in rng.uniform() }, y2 = s2.map { rng.uniform() < 0.3 + 0.4 * $0 ? 1 : 0 }
        let b2 = Metrics.baggedF1Threshold(s2, y2, resamples: 7, seed: 3)     // few resamples: a median that order would move
        for _ in 0..<5 {
            let shuffled = rng.permutation(80)
            XCTAssertEqual(Metrics.baggedF1Threshold(shuffled.map { s2[$0] }, shuffled.map { y2[$0] }, resamples: 7, seed: 3), b2, "independent of the order")
        }
        XCTAssertGreaterThan(Metrics.f1(s2, y2, threshold: b2), Metrics.f1(s2, y2, threshold: Metrics.bestF1Threshold(s2, y2)) - 0.05)
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
        XCTAssertEqual(Set(json.keys), ["n", "positives", "threshold", "f1", "f1_at_threshold", "pr_auc", "roc_auc", "accuracy", "data"])
        XCTAssertTrue((json["roc_auc"] as! [String: Any])["mean"] is NSNull)
    }
}
