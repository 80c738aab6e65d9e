#if canImport(Glibc)
import Glibc
#endif

/// Bump allocator for activations and scratch buffers of one training step.
///
/// `allocate` hands out 64-byte aligned Float buffers from large blocks; `reset()` at the start of a
/// step makes all of it reusable. Blocks are never freed or moved while the arena lives, so after the
/// first step of a given shape the training loop allocates nothing.
public final class ActivationArena {
    private var blocks: [(base: UnsafeMutablePointer<Float>, capacity: Int)] = []
    private var block = 0
    private var used = 0
    private let blockFloats: Int
    /// High-water mark of floats handed out in one step.
    public private(set) var peakFloats = 0
    private var inStep = 0

    public init(blockFloats: Int = 1 << 22) { self.blockFloats = blockFloats }

    /// A second arena for a layer's transient buffers (LayerNorm outputs, activated FFN hidden units) that
    /// backward recomputes instead of keeping: take `mark()` before and `release(to:)` after the layer.
    public var scratch: ActivationArena {
        if let s = scratchArena { return s }
        let s = ActivationArena(blockFloats: 1 << 20)
        scratchArena = s
        return s
    }
    private var scratchArena: ActivationArena?

    deinit { for b in blocks { Self.unmap(b) } }

    /// Blocks are mapped directly (not malloc'd): an unmapped block leaves the resident set at once, where
    /// malloc would keep freed mid-size blocks in its heap and the step's high-water mark would count twice.
    private static func map(_ floats: Int) -> (base: UnsafeMutablePointer<Float>, capacity: Int) {
        guard let raw = mmap(nil, floats * 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), raw != MAP_FAILED else {
            fatalError("activation arena: cannot map \(floats * 4) bytes: \(String(cString: strerror(errno)))")
        }
        return (raw.bindMemory(to: Float.self, capacity: floats), floats)
    }
    private static func unmap(_ b: (base: UnsafeMutablePointer<Float>, capacity: Int)) { munmap(b.base, b.capacity * 4) }

    /// Starts a new step. If the last step needed more than one block, the blocks are replaced by a single
    /// one of 1.5 x the step's peak size, so that steady state is one block and no allocation.
    public func reset() {
        scratchArena?.reset()
        if blocks.count > 1 {
            for b in blocks { Self.unmap(b) }
            blocks = [Self.map(max(peakFloats + peakFloats / 2, blockFloats))]
        }
        block = 0; used = 0; inStep = 0
    }

    /// Total floats reserved by the arena's blocks.
    public var reservedFloats: Int { blocks.reduce(0) { $0 + $1.capacity } }

    /// `count` floats, uninitialised.
    public func allocate(_ count: Int) -> UnsafeMutablePointer<Float> {
        let n = (max(count, 1) + 15) & ~15
        while block < blocks.count {
            if used + n <= blocks[block].capacity {
                let p = blocks[block].base + used
                used += n; inStep += n; peakFloats = max(peakFloats, inStep)
                return p
            }
            block += 1; used = 0
        }
        blocks.append(Self.map(max(blockFloats, n)))
        block = blocks.count - 1
        used = n; inStep += n; peakFloats = max(peakFloats, inStep)
        return blocks[block].base
    }

    /// A position in the arena: everything allocated after `mark()` is released by `release(to:)`
    /// (stack discipline). Backward passes use it to reuse one layer's temporaries for the next layer.
    public struct Mark { let block: Int; let used: Int; let inStep: Int }
    public func mark() -> Mark { Mark(block: block, used: used, inStep: inStep) }
    public func release(to m: Mark) { block = m.block; used = m.used; inStep = m.inStep }

    /// `count` floats set to zero (for gradient accumulators).
    public func zeros(_ count: Int) -> UnsafeMutablePointer<Float> {
        let p = allocate(count)
        p.update(repeating: 0, count: count)
        return p
    }
}
