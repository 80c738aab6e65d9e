import Communication
import Foundation
import TestSupport
import XCTest

/// Every collective under real `mpirun` with 2 and 3 ranks (3 oversubscribes this 2-core machine),
/// uneven all-gatherv counts included, and the failure paths: an error or a silent death on one rank
/// must end the whole job with a non-zero status, within a bounded time.
final class CollectiveTests: XCTestCase {
    var selfTest: String { productsFolder.appendingPathComponent("MPISelfTest").path }

    override func setUpWithError() throws {
        guard FileManager.default.fileExists(atPath: selfTest) else {
            XCTFail("MPISelfTest not built next to the tests; run `swift build --build-tests` (Launch/test does)")
            throw XCTSkip("no MPISelfTest")
        }
    }

    func testCollectivesOnTwoRanks() throws {
        let r = try mpirun(np: 2, executable: selfTest, arguments: ["collectives"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("collectives on 2 ranks: ok"), r.output)
    }

    func testCollectivesOnThreeRanksOversubscribed() throws {
        let r = try mpirun(np: 3, executable: selfTest, arguments: ["collectives"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("collectives on 3 ranks: ok"), r.output)
    }

    func testCollectivesOverTCP() throws {
        let r = try mpirun(np: 2, executable: selfTest, arguments: ["collectives"], extraFlags: ["--mca", "btl", "self,tcp"])
        XCTAssertEqual(r.status, 0, r.output)
    }

    func testErrorOnOneRankAbortsJobWithMessage() throws {
        let r = try mpirun(np: 3, executable: selfTest, arguments: ["abort-on", "1"], timeout: 60)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.output.contains("injected failure on rank 1"), r.output)
        XCTAssertFalse(r.output.contains("unreachable"), r.output)
        XCTAssertLessThan(r.seconds, 30)
    }

    func testKilledRankEndsJob() throws {
        let r = try mpirun(np: 2, executable: selfTest, arguments: ["die-on", "1"], timeout: 60)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertFalse(r.output.contains("unreachable"), r.output)
        XCTAssertLessThan(r.seconds, 30)
    }

    func testSingleProcessCommunicatorIsIdentity() {
        let comm = SingleProcessCommunicator()
        var x: [Float] = [1, 2, 3]
        x.withUnsafeMutableBufferPointer { comm.allReduceAverage($0.baseAddress!, count: 3) }
        XCTAssertEqual(x, [1, 2, 3])
        var out = [Float](repeating: 0, count: 3)
        x.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { comm.allGatherV(send: s.baseAddress!, receive: $0.baseAddress!, counts: [3]) } }
        XCTAssertEqual(out, x)
        XCTAssertEqual(comm.allGatherCounts(4), [4])
    }
}
