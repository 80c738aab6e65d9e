import Foundation
import NN
import Support
@testable import Training
import TrialData
import XCTest

/// The logistic-regression baseline (`cladmop baseline`, the ablations' floor) against an independent reference: the
/// objective it states, class-weighted log loss (eq. 7's weights N / 2 N_c) + l2 / 2 |w|^2 on the weights (not the
/// bias), minimised in Double by Newton's method on the baseline's own standardised features.
final class BaselineTests: XCTestCase {
    func testLogisticBaselineReachesTheNewtonOptimumOfItsObjective() throws {
        let dir = NSTemporaryDirectory() + "cladmop-baseline-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let hierarchy = try ICD10Hierarchy(path: root + "/data/icd10/icd10cm_2025_hierarchy.tsv")
        try writeSyntheticStore(path: dir + "/s.store", trials: 40, dim: 8, hierarchy: hierarchy, seed: 3)
        let store = try FeatureStore(path: dir + "/s.store")
        let trials = store.trials
        // Labels that the criteria vectors partly explain, 15 of 40 failures: both classes, unequal weights.
        var rng = RNG(seed: 9)
        let labels = trials.enumerated().map { i, t -> Int in
            let v = store.vector(sentence: t.sentences[0], level: 2)
            return v[0] + 0.7 * rng.normal() > 0 ? 1 : 0
        }
        XCTAssertTrue(labels.contains(0) && labels.contains(1))
        let l2: Float = 0.5
        let model = LogisticBaseline(train: trials, labels: labels, store: store, hierarchy: hierarchy, l2: l2, iterations: 3000)

        // Newton's method on the same features (the reference shares only them: the objective is written out here).
        let x = trials.map { model.standardize(model.features($0)).map(Double.init) + [1] }     // last: the bias' input
        func newtonOptimum(classWeighted: Bool, l2: Double) -> [Double] {
            let f = x[0].count, n = Double(x.count)
            let pos = Double(labels.filter { $0 == 1 }.count)
            let c = labels.map { classWeighted ? ($0 == 1 ? n / (2 * pos) : n / (2 * (n - pos))) : 1 }
            var w = [Double](repeating: 0, count: f)
            for _ in 0..<30 {
                var g = [Double](repeating: 0, count: f), h = [Double](repeating: 0, count: f * f)
                for (i, xi) in x.enumerated() {
                    let p = 1 / (1 + exp(-zip(w, xi).map(*).reduce(0, +)))
                    let d = c[i] * (p - Double(labels[i])) / n, curvature = c[i] * p * (1 - p) / n
                    for a in 0..<f {
                        g[a] += d * xi[a]
                        for b in 0..<f { h[a * f + b] += curvature * xi[a] * xi[b] }
                    }
                }
                for a in 0..<(f - 1) { g[a] += l2 * w[a]; h[a * f + a] += l2 }
                let step = solve(h, g, f)
                for a in 0..<f { w[a] -= step[a] }
            }
            return x.map { xi in 1 / (1 + exp(-zip(w, xi).map(*).reduce(0, +))) }
        }
        func worst(_ p: [Double], _ q: [Double]) -> Double { zip(p, q).map { abs($0 - $1) }.max()! }
        // The same probabilities on the training trials (Adam at a fixed rate ends near the optimum, within about 0.01
        // after 3,000 steps and 0.007 after 20,000, not on it).
        let reference = newtonOptimum(classWeighted: true, l2: Double(l2))
        let fitted = model.predict(trials)
        XCTAssertLessThan(worst(fitted, reference), 0.02, "largest difference from Newton's optimum")
        XCTAssertGreaterThan(reference.max()! - reference.min()!, 0.3, "the fit is not trivial")
        // The tolerance tells objectives apart: without the class weights, or with a tenth of the penalty, the optimum
        // is further from the fit than that.
        XCTAssertGreaterThan(worst(fitted, newtonOptimum(classWeighted: false, l2: Double(l2))), 0.04)
        XCTAssertGreaterThan(worst(fitted, newtonOptimum(classWeighted: true, l2: Double(l2) / 10)), 0.04)
    }

    /// x = A^-1 b by Gaussian elimination with partial pivoting (A: n x n, row-major).
    private func solve(_ a: [Double], _ b: [Double], _ n: Int) -> [Double] {
        var m = a, r = b
        for col in 0..<n {
            let pivot = (col..<n).max { abs(m[$0 * n + col]) < abs(m[$1 * n + col]) }!
            if pivot != col {
                for k in 0..<n { m.swapAt(col * n + k, pivot * n + k) }
                r.swapAt(col, pivot)
            }
            for row in (col + 1)..<n {
                let factor = m[row * n + col] / m[col * n + col]
                if factor == 0 { continue }
                for k in col..<n { m[row * n + k] -= factor * m[col * n + k] }
                r[row] -= factor * r[col]
            }
        }
        var out = [Double](repeating: 0, count: n)
        for row in stride(from: n - 1, through: 0, by: -1) {
            var s = r[row]
            for k in (row + 1)..<n { s -= m[row * n + k] * out[k] }
            out[row] = s / m[row * n + row]
        }
        return out
    }
}
