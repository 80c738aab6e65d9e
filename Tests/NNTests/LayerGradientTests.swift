@testable import NN
import TestSupport
import XCTest

/// Finite-difference checks of every layer and loss, inputs and parameters, masks included.
final class LayerGradientTests: XCTestCase {
    func testLinear() {
        let p = ParameterArena(seed: 1)
        let lin = Linear(p, "lin", inFeatures: 5, outFeatures: 7)
        p.finalize()
        let n = 6
        let x = randomBuffer(n * 5, seed: 2), dx = zeroBuffer(n * 5)
        var c = GradCheckCase(params: p) { arena in
            let y = arena.allocate(n * 7)
            let cache = lin.forward(p, x, y, rows: n, arena: arena)
            return (y, n * 7, { dy in lin.backward(p, cache, x, dy: dy, dx: dx, rows: n, arena: arena) })
        }
        c.inputs = [("x", x, dx, n * 5)]
        assertGradCheck(c)
    }

    func testLinearWithLoRAFrozenBase() {
        let p = ParameterArena(seed: 3)
        p.groups = [ParamGroup(name: "base", frozen: true), ParamGroup(name: "lora")]
        var lin = Linear(p, "lin", inFeatures: 6, outFeatures: 4, group: 0)
        lin.addLoRA(p, "lin", rank: 2, alpha: 4, group: 1)
        p.finalize()
        // B starts at zero (so the adapter is the identity at init); give it values to test all terms.
        let b = p.value(lin.adapter!.b)
        for i in 0..<8 { b[i] = Float(i) * 0.1 - 0.3 }
        let n = 5
        let x = randomBuffer(n * 6, seed: 4), dx = zeroBuffer(n * 6)
        var c = GradCheckCase(params: p) { arena in
            let y = arena.allocate(n * 4)
            let cache = lin.forward(p, x, y, rows: n, arena: arena)
            return (y, n * 4, { dy in lin.backward(p, cache, x, dy: dy, dx: dx, rows: n, arena: arena) })
        }
        c.inputs = [("x", x, dx, n * 6)]
        let report = gradCheck(c)
        XCTAssertEqual(Set(report.relativeErrors.keys), ["lin.lora_a", "lin.lora_b", "input:x"])
        for (name, err) in report.relativeErrors { XCTAssertLessThan(err, 1e-2, name) }
        // Frozen base: no gradient accumulated.
        XCTAssertTrue((0..<24).allSatisfy { p.grad(lin.weight)[$0] == 0 })
    }

    func testLayerNorm() {
        let p = ParameterArena(seed: 5)
        let ln = LayerNorm(p, "ln", dim: 8)
        p.finalize()
        for i in 0..<8 { p.value(ln.gamma)[i] = 1 + 0.1 * Float(i); p.value(ln.beta)[i] = 0.05 * Float(i) }
        let n = 4
        let x = randomBuffer(n * 8, seed: 6), dx = zeroBuffer(n * 8)
        var c = GradCheckCase(params: p) { arena in
            let y = arena.allocate(n * 8)
            let cache = ln.forward(p, x, y, rows: n, arena: arena)
            return (y, n * 8, { dy in ln.backward(p, cache, x, dy: dy, dx: dx, rows: n) })
        }
        c.inputs = [("x", x, dx, n * 8)]
        assertGradCheck(c)
    }

    func testGELUAndReLU() {
        let p = ParameterArena(seed: 0); p.finalize()
        let n = 40
        let x = randomBuffer(n, seed: 8, std: 2), dx = zeroBuffer(n)
        var g = GradCheckCase(params: p) { arena in
            let y = arena.allocate(n), dydx = arena.allocate(n), alone = arena.allocate(n)
            geluForwardWithDerivative(x, y, dydx, count: n)
            geluForward(x, alone, count: n)
            for i in 0..<n { XCTAssertEqual(y[i], alone[i], accuracy: 1e-6 * max(1, abs(alone[i]))) }
            return (y, n, { dy in for i in 0..<n { dx[i] += dy[i] * dydx[i] } })
        }
        g.inputs = [("x", x, dx, n)]
        assertGradCheck(g)
        // ReLU: keep inputs away from the kink at 0, where the derivative is undefined.
        for i in 0..<n where abs(x[i]) < 0.05 { x[i] = 0.3 }
        let dx2 = zeroBuffer(n)
        var r = GradCheckCase(params: p) { arena in
            let y = arena.allocate(n)
            reluForward(x, y, count: n)
            return (y, n, { dy in reluBackward(x, dy, dx2, count: n) })
        }
        r.inputs = [("x", x, dx2, n)]
        assertGradCheck(r)
    }

    func testEmbeddingSumWithSkippedIds() {
        let p = ParameterArena(seed: 9)
        let tables = [Embedding(p, "t0", count: 5, dim: 3, std: 1), Embedding(p, "t1", count: 4, dim: 3, std: 1)]
        p.finalize()
        let ids: [Int32] = [0, 1, 4, -1, 2, 3, 0, 0]   // (4 rows, 2 tables); -1 skips
        var c = GradCheckCase(params: p) { arena in
            let y = arena.allocate(4 * 3)
            ids.withUnsafeBufferPointer { embeddingSumForward(p, tables: tables, ids: $0.baseAddress!, rows: 4, y) }
            return (y, 12, { dy in ids.withUnsafeBufferPointer { embeddingSumBackward(p, tables: tables, ids: $0.baseAddress!, rows: 4, dy) } })
        }
        c.inputs = []
        assertGradCheck(c)
    }

    func testMaskedMeanPooling() {
        let p = ParameterArena(seed: 0); p.finalize()
        let b = 3, l = 4, d = 2
        let mask: [UInt8] = [1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0]   // last row fully masked -> zeros
        let x = randomBuffer(b * l * d, seed: 10), dx = zeroBuffer(b * l * d)
        var c = GradCheckCase(params: p) { arena in
            let y = arena.allocate(b * d)
            mask.withUnsafeBufferPointer { maskedMeanForward(x, mask: $0.baseAddress!, batch: b, length: l, dim: d, y) }
            return (y, b * d, { dy in mask.withUnsafeBufferPointer { maskedMeanBackward(dy, mask: $0.baseAddress!, batch: b, length: l, dim: d, dx) } })
        }
        c.inputs = [("x", x, dx, b * l * d)]
        assertGradCheck(c)
    }

    func testSelfAttentionWithKeyPaddingMask() {
        let p = ParameterArena(seed: 11)
        let attn = MultiHeadAttention(p, "attn", dim: 8, heads: 2)
        p.finalize()
        let b = 2, l = 5, d = 8
        let mask: [UInt8] = [1, 1, 1, 0, 0, 1, 1, 1, 1, 1]
        let x = randomBuffer(b * l * d, seed: 12), dx = zeroBuffer(b * l * d)
        var c = GradCheckCase(params: p) { arena in
            let y = arena.allocate(b * l * d)
            let cache = mask.withUnsafeBufferPointer {
                attn.forward(p, xq: x, xkv: x, keyMask: $0.baseAddress!, batch: b, queryLength: l, keyLength: l, y, arena: arena)
            }
            return (y, b * l * d, { dy in
                attn.backward(p, cache, x, kv: x, dy: dy, dx: dx, dkv: dx, arena: arena)
            })
        }
        c.inputs = [("x", x, dx, b * l * d)]
        assertGradCheck(c)
    }

    /// Cross-attention (heads of `headDim`) over a padded batch with `mask` (B, lk): the gradient-check case.
    func crossAttentionCase(seed: UInt64, heads: Int, headDim: Int, batch b: Int, queryLength lq: Int, keyLength lk: Int,
                            mask: [UInt8]) -> GradCheckCase {
        let p = ParameterArena(seed: seed)
        let attn = MultiHeadAttention(p, "attn", dim: heads * headDim, heads: heads)
        p.finalize()
        let d = heads * headDim
        let xq = randomBuffer(b * lq * d, seed: seed + 1), dxq = zeroBuffer(b * lq * d)
        let xkv = randomBuffer(b * lk * d, seed: seed + 2), dxkv = zeroBuffer(b * lk * d)
        var c = GradCheckCase(params: p) { arena in
            let y = arena.allocate(b * lq * d)
            let cache = mask.withUnsafeBufferPointer {
                attn.forward(p, xq: xq, xkv: xkv, keyMask: $0.baseAddress!, batch: b, queryLength: lq, keyLength: lk, y, arena: arena)
            }
            return (y, b * lq * d, { dy in
                attn.backward(p, cache, xq, kv: xkv, dy: dy, dx: dxq, dkv: dxkv, arena: arena)
            })
        }
        c.inputs = [("xq", xq, dxq, b * lq * d), ("xkv", xkv, dxkv, b * lk * d)]
        return c
    }

    /// Head widths 8, 16, 24 and 32 take the vector kernels of CKernels/attention.c (others the scalar path);
    /// 11 keys exercise the padding of the probability rows to a multiple of 8, and 5 queries the row tails.
    func testCrossAttentionVectorKernelsAtEveryHeadWidth() {
        for headDim in [8, 16, 24, 32] {
            let mask: [UInt8] = (0..<2 * 11).map { $0 % 7 == 3 ? 0 : 1 }
            assertGradCheck(crossAttentionCase(seed: 40, heads: 2, headDim: headDim, batch: 2, queryLength: 5, keyLength: 11, mask: mask))
        }
    }

    /// The attention core against its formula written out in Double: P = softmax(Q_h K_h^T / sqrt(d_h)) over
    /// the unmasked keys, context_h = P V_h and the row log-sum-exp kept for backward, for a vector-path (16)
    /// and a scalar-path (6) head width.
    func testAttentionCoreMatchesTheFormula() {
        for headDim in [16, 6] {
            let arena = ActivationArena()
            let b = 2, heads = 3, lq = 7, lk = 13, d = heads * headDim
            let q = randomBuffer(b * lq * d, seed: 50), k = randomBuffer(b * lk * d, seed: 51), v = randomBuffer(b * lk * d, seed: 52)
            let keep: [Float] = (0..<b * lk).map { $0 % 5 == 1 ? 0 : 1 }
            let queries = SequenceLayout(batch: b, length: lq), keys = SequenceLayout(batch: b, length: lk)
            let lse = arena.allocate(b * lq * heads), context = arena.allocate(b * lq * d)
            keep.withUnsafeBufferPointer {
                attentionForward(heads: heads, headDim: headDim, queries: queries, keys: keys, q: q, k: k, v: v,
                                 keyKeep: $0.baseAddress!, scale: 1 / Float(headDim).squareRoot(), lse: lse, context: context, arena: arena)
            }
            var worst = 0.0
            for s in 0..<b { for h in 0..<heads { for i in 0..<lq {
                var scores = [Double](repeating: -.infinity, count: lk)
                for j in 0..<lk where keep[s * lk + j] == 1 {
                    var dot = 0.0
                    for t in 0..<headDim { dot += Double(q[(s * lq + i) * d + h * headDim + t]) * Double(k[(s * lk + j) * d + h * headDim + t]) }
                    scores[j] = dot / Double(headDim).squareRoot()
                }
                let m = scores.max()!
                let e = scores.map { exp($0 - m) }, z = e.reduce(0, +)
                worst = max(worst, abs(m + log(z) - Double(lse[(s * lq) * heads + h * lq + i])))
                for t in 0..<headDim {
                    var o = 0.0
                    for j in 0..<lk {
                        let value = Double(v[(s * lk + j) * d + h * headDim + t])
                        o += e[j] / z * value
                    }
                    worst = max(worst, abs(o - Double(context[(s * lq + i) * d + h * headDim + t])))
                }
            } } }
            XCTAssertLessThan(worst, 1e-5, "head width \(headDim)")
        }
    }

    /// A packed batch (real rows only, `SequenceLayout(lengths:)`) gives the padded-and-masked batch's outputs
    /// and gradients on the real rows: padding can be dropped without changing the result.
    func testPackedSequencesMatchPaddedWithMask() {
        let lengths = [5, 2, 7, 1], b = lengths.count, l = lengths.max()!, d = 32
        let p = ParameterArena(seed: 60)
        let layer = TransformerLayer(p, "layer", dim: d, heads: 2, ffnDim: 64)
        p.finalize()
        let packed = SequenceLayout(lengths: lengths)
        let mask: [UInt8] = (0..<b * l).map { $0 % l < lengths[$0 / l] ? 1 : 0 }
        let realRows = (0..<b * l).filter { mask[$0] == 1 }     // padded row of each packed row
        let xPad = randomBuffer(b * l * d, seed: 61), dyPad = randomBuffer(b * l * d, seed: 62)
        for r in 0..<b * l where mask[r] == 0 { for c in 0..<d { dyPad[r * d + c] = 0 } }
        let xPack = zeroBuffer(packed.rows * d), dyPack = zeroBuffer(packed.rows * d)
        for (i, r) in realRows.enumerated() {
            (xPack + i * d).update(from: xPad + r * d, count: d); (dyPack + i * d).update(from: dyPad + r * d, count: d)
        }
        func run(_ x: FloatPtr, _ dy: FloatPtr, rows: Int, padded: Bool) -> (y: [Float], dx: [Float], grads: [Float]) {
            let arena = ActivationArena()
            p.zeroGrads()
            let y = arena.allocate(rows * d), dx = zeroBuffer(rows * d)
            let cache = mask.withUnsafeBufferPointer {
                padded ? layer.forward(p, x, keyMask: $0.baseAddress!, batch: b, length: l, y, arena: arena)
                       : layer.forward(p, x, keyMask: nil, layout: packed, y, arena: arena)
            }
            layer.backward(p, cache, x, dy: dy, dx: dx, arena: arena)
            return (Array(UnsafeBufferPointer(start: y, count: rows * d)), Array(UnsafeBufferPointer(start: dx, count: rows * d)),
                    Array(UnsafeBufferPointer(start: p.grads, count: p.count)))
        }
        let pad = run(xPad, dyPad, rows: b * l, padded: true), pack = run(xPack, dyPack, rows: packed.rows, padded: false)
        var worst: Float = 0
        for (i, r) in realRows.enumerated() {
            for c in 0..<d {
                worst = max(worst, abs(pad.y[r * d + c] - pack.y[i * d + c]), abs(pad.dx[r * d + c] - pack.dx[i * d + c]))
            }
        }
        for j in 0..<p.count { worst = max(worst, abs(pad.grads[j] - pack.grads[j])) }
        XCTAssertLessThan(worst, 1e-4)
    }

    func testCrossAttentionWithFullyMaskedSample() {
        let mask: [UInt8] = [1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]   // sample 1 has no key at all
        let c = crossAttentionCase(seed: 13, heads: 3, headDim: 2, batch: 3, queryLength: 2, keyLength: 4, mask: mask)
        assertGradCheck(c)
        // The fully masked sample's output is finite (the output bias), never NaN.
        let arena = ActivationArena()
        let (y, n, _) = c.run(arena)
        XCTAssertTrue((0..<n).allSatisfy { y[$0].isFinite })
    }

    func testFeedForward() {
        let p = ParameterArena(seed: 16)
        let ffn = FeedForward(p, "ffn", dim: 4, hiddenDim: 16)
        p.finalize()
        let n = 5
        let x = randomBuffer(n * 4, seed: 17), dx = zeroBuffer(n * 4)
        var c = GradCheckCase(params: p) { arena in
            let y = arena.allocate(n * 4)
            let cache = ffn.forward(p, x, y, rows: n, arena: arena)
            return (y, n * 4, { dy in ffn.backward(p, cache, x, dy: dy, dx: dx, rows: n, arena: arena) })
        }
        c.inputs = [("x", x, dx, n * 4)]
        assertGradCheck(c)
    }

    func testPreLNSelfAttentionLayer() {
        let p = ParameterArena(seed: 18)
        let layer = TransformerLayer(p, "layer", dim: 8, heads: 2, ffnDim: 32)
        p.finalize()
        let b = 2, l = 3, d = 8
        let mask: [UInt8] = [1, 1, 0, 1, 1, 1]
        let x = randomBuffer(b * l * d, seed: 19), dx = zeroBuffer(b * l * d)
        var c = GradCheckCase(params: p) { arena in
            let y = arena.allocate(b * l * d)
            let cache = mask.withUnsafeBufferPointer {
                layer.forward(p, x, keyMask: $0.baseAddress!, batch: b, length: l, y, arena: arena)
            }
            return (y, b * l * d, { dy in layer.backward(p, cache, x, dy: dy, dx: dx, arena: arena) })
        }
        c.inputs = [("x", x, dx, b * l * d)]
        assertGradCheck(c)
    }

    func testPreLNCrossAttentionLayer() {
        let p = ParameterArena(seed: 20)
        let layer = TransformerLayer(p, "layer", dim: 8, heads: 4, ffnDim: 16, cross: true)
        p.finalize()
        let b = 2, lq = 3, lk = 5, d = 8
        let mask: [UInt8] = [1, 1, 1, 0, 1, 0, 1, 1, 1, 1]
        let q = randomBuffer(b * lq * d, seed: 21), dq = zeroBuffer(b * lq * d)
        let kv = randomBuffer(b * lk * d, seed: 22), dkv = zeroBuffer(b * lk * d)
        var c = GradCheckCase(params: p) { arena in
            let y = arena.allocate(b * lq * d)
            let cache = mask.withUnsafeBufferPointer {
                layer.forward(p, q, kv: kv, keyMask: $0.baseAddress!, batch: b, length: lq, keyLength: lk, y, arena: arena)
            }
            return (y, b * lq * d, { dy in
                layer.backward(p, cache, q, kv: kv, dy: dy, dx: dq, dkv: dkv, arena: arena)
            })
        }
        c.inputs = [("q", q, dq, b * lq * d), ("kv", kv, dkv, b * lk * d)]
        assertGradCheck(c)
    }

    /// Learned queries shared by every sequence (the centroids): LN_q and the query projection run once on
    /// their rows; the gradient of those rows sums over the sequences. Keys packed at different lengths.
    func testCrossAttentionLayerWithSharedQueries() {
        let p = ParameterArena(seed: 23)
        let layer = TransformerLayer(p, "layer", dim: 32, heads: 2, ffnDim: 64, cross: true)
        p.finalize()
        let lq = 3, d = 32, keys = SequenceLayout(lengths: [5, 2, 7]), queries = SequenceLayout(batch: 3, length: lq)
        let q = randomBuffer(lq * d, seed: 24), dq = zeroBuffer(lq * d)
        let kv = randomBuffer(keys.rows * d, seed: 25), dkv = zeroBuffer(keys.rows * d)
        var c = GradCheckCase(params: p) { arena in
            let y = arena.allocate(queries.rows * d)
            let cache = layer.forward(p, q, kv: kv, keyMask: nil, layout: queries, keyLayout: keys, sharedQueries: true, y, arena: arena)
            return (y, queries.rows * d, { dy in layer.backward(p, cache, q, kv: kv, dy: dy, dx: dq, dkv: dkv, arena: arena) })
        }
        c.inputs = [("q", q, dq, lq * d), ("kv", kv, dkv, keys.rows * d)]
        assertGradCheck(c)
    }

    func testSymmetricInfoNCE() {
        for normalize in [true, false] {
            let p = ParameterArena(seed: 0)
            let logScale = p.register("log_scale", shape: [1], initializer: .zeros)
            p.finalize()
            p.value(logScale)[0] = 0.6
            let n = 5, d = 4
            let a = randomBuffer(n * d, seed: 23, std: normalize ? 1 : 0.5), da = zeroBuffer(n * d)
            let b = randomBuffer(n * d, seed: 24, std: normalize ? 1 : 0.5), db = zeroBuffer(n * d)
            var c = GradCheckCase(params: p) { arena in
                let out = arena.allocate(1)
                let ga = arena.zeros(n * d), gb = arena.zeros(n * d)
                let r = symmetricInfoNCE(a: a, b: b, batch: n, dim: d, logScale: p.value(logScale)[0], normalize: normalize,
                                         da: ga, db: gb, arena: arena)
                out[0] = r.loss
                return (out, 1, { dy in
                    for i in 0..<n * d { da[i] += dy[0] * ga[i]; db[i] += dy[0] * gb[i] }
                    p.grad(logScale)[0] += dy[0] * r.dLogScale
                })
            }
            c.inputs = [("a", a, da, n * d), ("b", b, db, n * d)]
            assertGradCheck(c)
        }
    }

    /// Blocked logits (running column log-sum-exp) and gradients for a subset of rows give what the one-block
    /// computation gives for the whole batch.
    func testInfoNCETilesAndGradientRowsMatchTheWholeBatch() {
        let n = 11, d = 6
        let a = randomBuffer(n * d, seed: 31, std: 1), b = randomBuffer(n * d, seed: 32, std: 1)
        let arena = ActivationArena()
        let fullA = zeroBuffer(n * d), fullB = zeroBuffer(n * d)
        let full = symmetricInfoNCE(a: a, b: b, batch: n, dim: d, logScale: 1.2, normalize: true, da: fullA, db: fullB, arena: arena)
        for tile in [1, 3, 4, 11] {
            for rows in [0..<n, 2..<7, 10..<11] {
                let ga = zeroBuffer(rows.count * d), gb = zeroBuffer(rows.count * d)
                let r = symmetricInfoNCE(a: a, b: b, batch: n, dim: d, logScale: 1.2, normalize: true, gradientRows: rows,
                                         da: ga, db: gb, tileRows: tile, arena: arena)
                XCTAssertEqual(r.loss, full.loss, accuracy: 1e-6 * abs(full.loss), "tile \(tile)")
                XCTAssertEqual(r.dLogScale, full.dLogScale, accuracy: 1e-5, "tile \(tile)")
                for i in 0..<rows.count * d {
                    XCTAssertEqual(ga[i], fullA[rows.lowerBound * d + i], accuracy: 1e-6, "da tile \(tile) rows \(rows)")
                    XCTAssertEqual(gb[i], fullB[rows.lowerBound * d + i], accuracy: 1e-6, "db tile \(tile) rows \(rows)")
                }
            }
        }
    }

    func testInfoNCEKnownValue() {
        // Two orthogonal unit pairs, s = 1: each row is softmax([1, 0]) -> CE = log(1 + e^-1).
        let a: [Float] = [1, 0, 0, 1], b: [Float] = [1, 0, 0, 1]
        let arena = ActivationArena()
        let r = a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in
            symmetricInfoNCE(a: pa.baseAddress!, b: pb.baseAddress!, batch: 2, dim: 2, logScale: 0, normalize: true,
                             da: nil, db: nil, arena: arena)
        } }
        XCTAssertEqual(Double(r.loss), log(1 + exp(-1.0)), accuracy: 1e-6)
    }

    func testWeightedBCE() {
        let p = ParameterArena(seed: 0); p.finalize()
        let n = 6
        let z = randomBuffer(n, seed: 25, std: 2), dz = zeroBuffer(n)
        let y: [Float] = [1, 0, 1, 1, 0, 0]
        var c = GradCheckCase(params: p) { arena in
            let out = arena.allocate(1), g = arena.allocate(n)
            out[0] = y.withUnsafeBufferPointer { weightedBCE(logits: z, labels: $0.baseAddress!, count: n, positiveWeight: 2, negativeWeight: 0.5, dz: g) }
            return (out, 1, { dy in for i in 0..<n { dz[i] += dy[0] * g[i] } })
        }
        c.inputs = [("z", z, dz, n)]
        assertGradCheck(c)
        // Known value: z = 0 gives p = 1/2, L = (w1 * #pos + w0 * #neg) log 2 / N.
        let zeros = [Float](repeating: 0, count: n)
        let l = zeros.withUnsafeBufferPointer { zp in y.withUnsafeBufferPointer {
            weightedBCE(logits: zp.baseAddress!, labels: $0.baseAddress!, count: n, positiveWeight: 2, negativeWeight: 0.5, dz: nil) } }
        XCTAssertEqual(Double(l), (2 * 3 + 0.5 * 3) * log(2.0) / 6, accuracy: 1e-6)
    }
}
