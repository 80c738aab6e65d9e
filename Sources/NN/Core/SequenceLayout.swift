/// A batch of sequences whose rows are stored back to back in every (rows, d) activation: sample i owns rows
/// `rowOffsets[i] ..< rowOffsets[i + 1]`. A padded batch (B, L) is the uniform layout; a packed one keeps only
/// real tokens, so row-wise layers (projections, FFN, LayerNorm) and attention do no work on padding.
public struct SequenceLayout: Equatable, Sendable {
    /// count + 1 offsets, the first 0 and the last `rows`.
    public let rowOffsets: [Int]
    public let maxLength: Int

    public init(lengths: [Int]) {
        var offsets = [0]
        offsets.reserveCapacity(lengths.count + 1)
        for l in lengths { offsets.append(offsets.last! + l) }
        rowOffsets = offsets
        maxLength = lengths.max() ?? 0
    }

    /// The real rows of a padded batch: sequence i has as many rows as `mask[i * length ..< (i + 1) * length]`
    /// has non-zero bytes.
    public init(mask: [UInt8], batch: Int, length: Int) {
        self.init(lengths: (0..<batch).map { i in (0..<length).reduce(0) { $0 + (mask[i * length + $1] != 0 ? 1 : 0) } })
    }

    /// B sequences of L rows each (a padded batch).
    public init(batch: Int, length: Int) { self.init(lengths: [Int](repeating: length, count: batch)) }

    public var count: Int { rowOffsets.count - 1 }
    public var rows: Int { rowOffsets[count] }
    public func length(_ i: Int) -> Int { rowOffsets[i + 1] - rowOffsets[i] }
}
