import Foundation

/// Deterministic, seedable generator (SplitMix64). Its whole state is one UInt64, so it can be
/// stored in a checkpoint and resumed exactly.
public struct RNG: Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }

    @inlinable public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    @inlinable public mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }
    @inlinable public mutating func uniform(_ lo: Float, _ hi: Float) -> Float { lo + (hi - lo) * Float(uniform()) }
    /// Uniform integer in 0..<n.
    @inlinable public mutating func int(below n: Int) -> Int { Int(next() % UInt64(n)) }
    /// Standard normal (Box-Muller).
    @inlinable public mutating func normal() -> Float {
        let u1 = max(uniform(), 1e-300), u2 = uniform()
        return Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
    }
    /// A permutation of 0..<n (Fisher-Yates).
    @inlinable public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n > 1 { for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, int(below: i + 1)) } }
        return p
    }
}
