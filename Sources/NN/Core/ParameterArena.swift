import Support

/// A named parameter: a view of `count` floats at `offset` in a `ParameterArena`.
public struct ParamRef: Sendable, Hashable {
    public let index: Int
    public let offset: Int
    public let count: Int
}

/// How a parameter is initialised when it is registered.
public enum ParamInit: Sendable {
    case zeros, ones
    case normal(std: Float)
    /// U(-1/sqrt(fanIn), 1/sqrt(fanIn)), PyTorch's default for Linear.
    case uniformFanIn(Int)
}

/// An optimizer parameter group: its own learning rate and weight decay, or frozen.
public struct ParamGroup: Sendable {
    public var name: String
    public var learningRate: Float
    public var weightDecay: Float
    public var frozen: Bool
    public init(name: String, learningRate: Float = 1e-3, weightDecay: Float = 0, frozen: Bool = false) {
        self.name = name; self.learningRate = learningRate; self.weightDecay = weightDecay; self.frozen = frozen
    }
}

/// Every parameter of a model in one contiguous Float32 arena, and the gradients in a second arena
/// with the same layout (llm.c style): the optimizer is one loop, the gradient all-reduce one call.
///
/// Build phase: layers call `register` and keep the returned `ParamRef`. `finalize()` then allocates
/// the arenas; after that no parameter is added and `values`/`grads` never move.
public final class ParameterArena {
    public struct Entry: Sendable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public let count: Int
        public var group: Int
    }

    public private(set) var entries: [Entry] = []
    public var groups: [ParamGroup] = [ParamGroup(name: "default")]
    public private(set) var count = 0
    public private(set) var values: UnsafeMutablePointer<Float>
    public private(set) var grads: UnsafeMutablePointer<Float>
    public private(set) var isFinalized = false
    private var staging: [Float] = []
    /// Only counts (`ParameterArena.counting()`): `register` records shapes; nothing is initialised or allocated.
    private var countOnly = false
    private var rng: RNG
    private var byName: [String: Int] = [:]

    public init(seed: UInt64) {
        rng = RNG(seed: seed)
        values = .allocate(capacity: 1)
        grads = .allocate(capacity: 1)
    }

    /// An arena that sizes a model without building it: `register` records the shapes and `count` adds them up;
    /// its values are never allocated (it is never finalized, and no forward may run on it).
    public static func counting() -> ParameterArena {
        let p = ParameterArena(seed: 0)
        p.countOnly = true
        return p
    }

    deinit {
        values.deallocate()
        grads.deallocate()
        bf16Values?.deallocate()
    }

    /// The GEMM precision of the layers that read this arena (`Linear`). `.bf16` keeps a bf16 copy of every value
    /// beside the fp32 master values (`valueBF16`); the fp32 values stay the ones the optimizer updates.
    public private(set) var precision: Precision = .fp32
    /// bf16(values), round to nearest even, made by `refreshLowPrecisionCopy`; nil in fp32.
    public private(set) var bf16Values: UnsafeMutablePointer<UInt16>?
    /// How many times the bf16 copy was made (the tests check that a step makes it exactly once).
    public private(set) var lowPrecisionRefreshes = 0

    /// Sets the GEMM precision (`Precision.resolve` first: a machine without bf16 gets fp32). Call it once the
    /// values are final for the first step (after initialisation, broadcast or checkpoint loading): bf16 makes the
    /// copy now, and `Optimizer.update` remakes it after every update.
    public func setPrecision(_ precision: Precision) {
        precondition(isFinalized, "setPrecision before finalize")
        self.precision = precision
        if precision == .bf16 {
            if bf16Values == nil {
                bf16Values = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 2, alignment: 64)
                    .bindMemory(to: UInt16.self, capacity: max(count, 1))
            }
            refreshLowPrecisionCopy()
        } else {
            bf16Values?.deallocate(); bf16Values = nil
        }
    }

    /// bf16Values = bf16(values): once per step, after the optimizer changed the values (or after anything else
    /// overwrote them). Nothing in fp32.
    public func refreshLowPrecisionCopy() {
        guard let b = bf16Values else { return }
        convertToBF16(values, b, count: count)
        lowPrecisionRefreshes += 1
    }

    /// The bf16 copy of a parameter in bf16, nil in fp32 (`gemm` then reads the fp32 values).
    @inline(__always) public func valueBF16(_ p: ParamRef) -> UnsafePointer<UInt16>? {
        bf16Values.map { UnsafePointer($0 + p.offset) }
    }

    /// Registers a parameter of `shape` (row-major) in parameter group `group`.
    public func register(_ name: String, shape: [Int], initializer: ParamInit, group: Int = 0) -> ParamRef {
        precondition(!isFinalized, "register after finalize: \(name)")
        precondition(byName[name] == nil, "duplicate parameter name \(name)")
        let n = shape.reduce(1, *)
        let ref = ParamRef(index: entries.count, offset: count, count: n)
        entries.append(Entry(name: name, shape: shape, offset: count, count: n, group: group))
        byName[name] = ref.index
        count += n
        if countOnly { return ref }
        switch initializer {
        case .zeros: staging.append(contentsOf: repeatElement(0, count: n))
        case .ones: staging.append(contentsOf: repeatElement(1, count: n))
        case .normal(let std): for _ in 0..<n { staging.append(rng.normal() * std) }
        case .uniformFanIn(let fanIn):
            let bound = 1 / Float(fanIn).squareRoot()
            for _ in 0..<n { staging.append(rng.uniform(-bound, bound)) }
        }
        return ref
    }

    /// Allocates the value and gradient arenas (64-byte aligned) and zeroes the gradients.
    public func finalize() {
        precondition(!isFinalized && !countOnly)
        values.deallocate(); grads.deallocate()
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        values = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        let rawG = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        grads = rawG.bindMemory(to: Float.self, capacity: max(count, 1))
        staging.withUnsafeBufferPointer { values.update(from: $0.baseAddress!, count: count) }
        staging = []
        zeroGrads()
        isFinalized = true
    }

    @inline(__always) public func value(_ p: ParamRef) -> UnsafeMutablePointer<Float> { values + p.offset }
    @inline(__always) public func grad(_ p: ParamRef) -> UnsafeMutablePointer<Float> { grads + p.offset }

    public func zeroGrads() { grads.update(repeating: 0, count: max(count, 1)) }

    /// Moves every parameter whose name starts with `prefix` into group `group`.
    public func assign(prefix: String, toGroup group: Int) {
        precondition(group < groups.count)
        for i in entries.indices where entries[i].name.hasPrefix(prefix) { entries[i].group = group }
    }

    /// The arena ranges of the parameters named `prefix` or `prefix.*` (a layer's tensors, LoRA included), merged
    /// where adjacent, in arena order.
    public func ranges(prefix: String) -> [Range<Int>] {
        if let r = rangesByPrefix[prefix] { return r }
        var out: [Range<Int>] = []
        for e in entries where e.name == prefix || e.name.hasPrefix(prefix + ".") {
            let r = e.offset..<(e.offset + e.count)
            if let last = out.last, last.upperBound == r.lowerBound { out[out.count - 1] = last.lowerBound..<r.upperBound } else { out.append(r) }
        }
        precondition(!out.isEmpty, "no parameter named \(prefix)")
        if isFinalized { rangesByPrefix[prefix] = out }
        return out
    }
    private var rangesByPrefix: [String: [Range<Int>]] = [:]

    /// Sum of all values in Float64: compared across ranks to detect replicas that diverged.
    public func checksum() -> Double {
        var s = 0.0, t = 0.0
        for i in 0..<count { s += Double(values[i]); t += Double(values[i]) * Double(i % 7 + 1) }
        return s + 1e-3 * t
    }
}
