/// A learnable table of `count` vectors of width `dim`.
public struct Embedding {
    public let count: Int
    public let dim: Int
    public let table: ParamRef

    public init(_ params: ParameterArena, _ name: String, count: Int, dim: Int, std: Float = 0.02, group: Int = 0) {
        self.count = count; self.dim = dim
        table = params.register("\(name).weight", shape: [count, dim], initializer: .normal(std: std), group: group)
    }
}

/// Sum of lookups in several tables: out[n] = sum_t tables[t][ids[n, t]], ids is (N, T), out is (N, dim).
/// An id < 0 contributes nothing (for example an ICD code shallower than the deepest level).
public func embeddingSumForward(_ p: ParameterArena, tables: [Embedding], ids: UnsafePointer<Int32>,
                                rows n: Int, _ out: FloatPtr) {
    let dim = tables[0].dim, t = tables.count
    out.update(repeating: 0, count: n * dim)
    for r in 0..<n {
        let o = out + r * dim
        for k in 0..<t {
            let id = Int(ids[r * t + k])
            if id < 0 { continue }
            precondition(id < tables[k].count, "embedding id \(id) out of range \(tables[k].count)")
            let row = p.value(tables[k].table) + id * dim
            for i in 0..<dim { o[i] += row[i] }
        }
    }
}

/// Scatter-adds dout rows into the gradient rows of every looked-up id.
public func embeddingSumBackward(_ p: ParameterArena, tables: [Embedding], ids: UnsafePointer<Int32>,
                                 rows n: Int, _ dout: ConstFloatPtr) {
    let dim = tables[0].dim, t = tables.count
    for k in 0..<t where !p.isFrozen(tables[k].table) {
        let g = p.grad(tables[k].table)
        for r in 0..<n {
            let id = Int(ids[r * t + k])
            if id < 0 { continue }
            let gr = g + id * dim, d = dout + r * dim
            for i in 0..<dim { gr[i] += d[i] }
        }
    }
}
