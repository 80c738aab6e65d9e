import CDNNL
import Foundation

/// oneDNN's matmul primitive (Debian libdnnl 2.6) for `gemm`: row-major C(m,n) = alpha op(A)(m,k) op(B)(k,n) + beta C
/// with A and B in fp32 or bf16 and C in fp32 (bf16 products are accumulated in fp32: VDPBF16PS on AVX512-BF16).
///
/// Primitive creation is expensive (0.2-0.7 ms measured here: implementation search and JIT code), so primitives
/// are cached, with the memory objects of their operands, per (m, n, k, strides, transposes, input type, alpha, beta);
/// each call only points those memory objects at its three arrays. The rows of a step change with the sequence lengths of each batch, so the cache is emptied when
/// it reaches `capacity` primitives. Only this file imports CDNNL.
final class OneDNN: @unchecked Sendable {
    /// The process's CPU engine, or nil when oneDNN could not make one (the callers then use OpenBLAS and fp32).
    static let shared: OneDNN? = OneDNN()

    enum Input { case fp32, bf16 }

    private struct Key: Hashable { var m, n, k, lda, ldb, ldc: Int; var transA, transB: Bool; var input: Input; var alpha, beta: Float }
    private let capacity = 1024
    /// Primitives made so far (cache misses), for the benchmarks.
    private(set) var created = 0

    private var engine: dnnl_engine_t?
    private var stream: dnnl_stream_t?
    /// A primitive with the memory objects of its three operands (their data handles are set per call).
    private struct Entry { var primitive: dnnl_primitive_t; var a, b, c: dnnl_memory_t }
    private var primitives: [Key: Entry] = [:]
    /// Shapes oneDNN refused (primitive or memory creation failed): not tried again; the caller computes them otherwise.
    private var refused: Set<Key> = []
    /// GEMMs normally run on a rank's one compute thread; the lock keeps the cache consistent if two threads call.
    private let lock = NSLock()
    /// Name of the implementation oneDNN chose per key (e.g. `gemm:jit`, `brg:avx512_core_bf16`), for `bench --kernels`.
    private(set) var implementations: [String: String] = [:]

    private init?() {
        // One thread per call unless OpenBLAS was given more: ranks under mpirun get OPENBLAS_NUM_THREADS=1, and
        // libgomp would otherwise start a thread per core in every rank.
        _ = cdnnl_set_omp_threads(Int32(max(blasThreadCount(), 1)))
        var e: dnnl_engine_t?
        guard dnnl_engine_create(&e, dnnl_cpu, 0) == dnnl_success, let e else { return nil }
        var s: dnnl_stream_t?
        guard dnnl_stream_create(&s, e, dnnl_stream_default_flags.rawValue) == dnnl_success, let s else {
            dnnl_engine_destroy(e); return nil
        }
        engine = e; stream = s
    }

    private func dataType(_ input: Input) -> dnnl_data_type_t { input == .bf16 ? dnnl_bf16 : dnnl_f32 }

    private func entry(_ key: Key) -> Entry? {
        if let e = primitives[key] { return e }
        if refused.contains(key) { return nil }
        guard let e = makeEntry(key) else { refused.insert(key); return nil }
        return e
    }

    private func makeEntry(_ key: Key) -> Entry? {
        if primitives.count >= capacity {
            for e in primitives.values { destroy(e) }
            primitives.removeAll(keepingCapacity: true)
        }
        var a = dnnl_memory_desc_t(), b = dnnl_memory_desc_t(), c = dnnl_memory_desc_t()
        guard describe(&a, &b, &c, key) else { return nil }
        var desc = dnnl_matmul_desc_t()
        guard dnnl_matmul_desc_init(&desc, &a, &b, nil, &c) == dnnl_success else { return nil }
        var attr: dnnl_primitive_attr_t?
        guard dnnl_primitive_attr_create(&attr) == dnnl_success, let attr else { return nil }
        defer { dnnl_primitive_attr_destroy(attr) }
        if key.alpha != 1 {
            var alpha = key.alpha
            guard dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha) == dnnl_success else { return nil }
        }
        if key.beta != 0 {
            var ops: dnnl_post_ops_t?
            guard dnnl_post_ops_create(&ops) == dnnl_success, let ops else { return nil }
            defer { dnnl_post_ops_destroy(ops) }
            guard dnnl_post_ops_append_sum(ops, key.beta) == dnnl_success,
                  dnnl_primitive_attr_set_post_ops(attr, ops) == dnnl_success else { return nil }
        }
        var pd: dnnl_primitive_desc_t?
        guard dnnl_primitive_desc_create(&pd, &desc, attr, engine, nil) == dnnl_success, let pd else { return nil }
        defer { dnnl_primitive_desc_destroy(pd) }
        var name: UnsafePointer<CChar>?
        if dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) == dnnl_success, let name {
            implementations["\(key.input == .bf16 ? "bf16" : "fp32") \(key.transA ? "T" : "N")\(key.transB ? "T" : "N")"] = String(cString: name)
        }
        var p: dnnl_primitive_t?
        guard dnnl_primitive_create(&p, pd) == dnnl_success, let p else { return nil }
        // Memory objects made once with a null handle; each call points them at its operands.
        var ma: dnnl_memory_t?, mb: dnnl_memory_t?, mc: dnnl_memory_t?
        guard dnnl_memory_create(&ma, &a, engine, nil) == dnnl_success, let ma,
              dnnl_memory_create(&mb, &b, engine, nil) == dnnl_success, let mb,
              dnnl_memory_create(&mc, &c, engine, nil) == dnnl_success, let mc else {
            for m in [ma, mb, mc] { if let m { dnnl_memory_destroy(m) } }
            dnnl_primitive_destroy(p)
            return nil
        }
        let e = Entry(primitive: p, a: ma, b: mb, c: mc)
        primitives[key] = e
        created += 1
        return e
    }

    private func destroy(_ e: Entry) {
        dnnl_memory_destroy(e.a); dnnl_memory_destroy(e.b); dnnl_memory_destroy(e.c); dnnl_primitive_destroy(e.primitive)
    }

    /// The memory descriptors of op(A) (m, k), op(B) (k, n) and C (m, n): a transposed operand is the stored
    /// matrix read with swapped strides.
    private func describe(_ a: inout dnnl_memory_desc_t, _ b: inout dnnl_memory_desc_t, _ c: inout dnnl_memory_desc_t, _ key: Key) -> Bool {
        var da: [Int64] = [Int64(key.m), Int64(key.k)], db: [Int64] = [Int64(key.k), Int64(key.n)], dc: [Int64] = [Int64(key.m), Int64(key.n)]
        var sa: [Int64] = key.transA ? [1, Int64(key.lda)] : [Int64(key.lda), 1]
        var sb: [Int64] = key.transB ? [1, Int64(key.ldb)] : [Int64(key.ldb), 1]
        var sc: [Int64] = [Int64(key.ldc), 1]
        let t = dataType(key.input)
        return dnnl_memory_desc_init_by_strides(&a, 2, &da, t, &sa) == dnnl_success
            && dnnl_memory_desc_init_by_strides(&b, 2, &db, t, &sb) == dnnl_success
            && dnnl_memory_desc_init_by_strides(&c, 2, &dc, dnnl_f32, &sc) == dnnl_success
    }

    /// C = alpha op(A) op(B) + beta C; a and b point to floats (`.fp32`) or bf16 values (`.bf16`, UInt16), lda/ldb/ldc
    /// are row strides in elements. Returns false when oneDNN refused (the caller then computes it another way).
    func matmul(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafeRawPointer, lda: Int,
                b: UnsafeRawPointer, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, input: Input) -> Bool {
        let key = Key(m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc, transA: transA, transB: transB, input: input, alpha: alpha, beta: beta)
        lock.lock(); defer { lock.unlock() }
        guard let e = entry(key),
              dnnl_memory_set_data_handle(e.a, UnsafeMutableRawPointer(mutating: a)) == dnnl_success,
              dnnl_memory_set_data_handle(e.b, UnsafeMutableRawPointer(mutating: b)) == dnnl_success,
              dnnl_memory_set_data_handle(e.c, UnsafeMutableRawPointer(c)) == dnnl_success else { return false }
        // The three arguments on the stack (no heap allocation per GEMM).
        let executed = withUnsafeTemporaryAllocation(of: dnnl_exec_arg_t.self, capacity: 3) { args in
            args[0] = dnnl_exec_arg_t(arg: DNNL_ARG_SRC, memory: e.a)
            args[1] = dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS, memory: e.b)
            args[2] = dnnl_exec_arg_t(arg: DNNL_ARG_DST, memory: e.c)
            return dnnl_primitive_execute(e.primitive, stream, 3, args.baseAddress) == dnnl_success
        }
        guard executed else { return false }
        return dnnl_stream_wait(stream) == dnnl_success
    }
}
