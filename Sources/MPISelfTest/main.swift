// Multi-rank checks of every collective, run under mpirun by Tests/CommunicationTests.
// Usage: mpi-selftest collectives | abort-on RANK | stall-then-abort
import Communication
import Support
import Foundation

let comm = makeCommunicator()
let mode = CommandLine.arguments.dropFirst().first ?? "collectives"
var failures = 0
func check(_ ok: Bool, _ what: String) {
    if !ok { failures += 1; standardErrorWrite(Data("rank \(comm.rank): FAIL \(what)\n".utf8)) }
}

switch mode {
case "collectives":
    let w = comm.size, r = comm.rank
    // broadcast from the last rank
    var b = [Float](repeating: Float(r), count: 1000)
    b.withUnsafeMutableBufferPointer { comm.broadcast($0.baseAddress!, count: 1000, root: w - 1) }
    check(b.allSatisfy { $0 == Float(w - 1) }, "broadcast")
    var bytes = [UInt8](repeating: UInt8(r), count: 37)
    bytes.withUnsafeMutableBytes { comm.broadcastBytes($0.baseAddress!, count: 37, root: 0) }
    check(bytes.allSatisfy { $0 == 0 }, "broadcastBytes")
    // all-reduce sum and average of Float, sum and max of Double
    var f = (0..<1001).map { Float($0 % 13) + Float(r) }
    f.withUnsafeMutableBufferPointer { comm.allReduceSum($0.baseAddress!, count: 1001) }
    let rankSum = Float(w * (w - 1) / 2)
    check((0..<1001).allSatisfy { f[$0] == Float(w) * Float($0 % 13) + rankSum }, "allReduceSum float")
    var avg = [Float](repeating: Float(r + 1), count: 5)
    avg.withUnsafeMutableBufferPointer { comm.allReduceAverage($0.baseAddress!, count: 5) }
    check(avg.allSatisfy { abs($0 - Float(w + 1) / 2) < 1e-6 }, "allReduceAverage")
    var d = [Double(r), 1]
    d.withUnsafeMutableBufferPointer { comm.allReduceSum($0.baseAddress!, count: 2) }
    check(d == [Double(w * (w - 1) / 2), Double(w)], "allReduceSum double")
    var mx = [Double(r * 10)]
    mx.withUnsafeMutableBufferPointer { comm.allReduceMax($0.baseAddress!, count: 1) }
    check(mx[0] == Double((w - 1) * 10), "allReduceMax")
    // all-gatherv with uneven counts, one rank possibly empty: rank q sends (q*2+1) % 4 rows of 3 floats.
    let counts = (0..<w).map { (($0 * 2 + 1) % 4) * 3 }
    let mine = (0..<counts[r]).map { Float(r * 100 + $0) }
    var all = [Float](repeating: -1, count: counts.reduce(0, +))
    mine.withUnsafeBufferPointer { s in
        all.withUnsafeMutableBufferPointer { comm.allGatherV(send: s.baseAddress ?? UnsafePointer(bitPattern: 8)!, receive: $0.baseAddress!, counts: counts) }
    }
    var expected: [Float] = []
    for q in 0..<w { expected += (0..<counts[q]).map { Float(q * 100 + $0) } }
    check(all == expected, "allGatherV uneven counts \(counts)")
    check(comm.allGatherCounts(r + 5) == (0..<w).map { $0 + 5 }, "allGatherCounts")
    comm.barrier()
    var total = [Double(failures)]
    total.withUnsafeMutableBufferPointer { comm.allReduceSum($0.baseAddress!, count: 1) }
    if r == 0 { print("collectives on \(w) ranks: \(total[0] == 0 ? "ok" : "FAILED")") }
    exit(total[0] == 0 ? 0 : 1)
case "abort-on":
    // The named rank throws while the others wait in a collective: the job must end with the message.
    let bad = Int(CommandLine.arguments[2]) ?? 1
    if comm.rank == bad { comm.abort(message: "injected failure on rank \(bad)", code: 3) }
    var x = [Float](repeating: 1, count: 4)
    x.withUnsafeMutableBufferPointer { comm.allReduceSum($0.baseAddress!, count: 4) }
    comm.barrier()
    print("unreachable: collective completed")
    exit(0)
case "die-on":
    // The named rank dies without a word (like kill -9): mpirun must end the others.
    let bad = Int(CommandLine.arguments[2]) ?? 1
    if comm.rank == bad { kill(getpid(), SIGKILL) }
    comm.barrier()
    print("unreachable: barrier completed")
    exit(0)
default:
    standardErrorWrite(Data("unknown mode \(mode)\n".utf8))
    exit(2)
}
