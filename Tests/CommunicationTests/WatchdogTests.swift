@testable import Communication
import Foundation
import XCTest

/// The watchdog's reading of where a thread sleeps (/proc/PID/task/TID/syscall): a write to descriptor 1 or 2 is
/// waiting on output, which holds the stall clock; anything else is not.
final class WatchdogTests: XCTestCase {
    func testAWriteToStandardOutputOrErrorIsWaitingOnOutput() {
        #if arch(x86_64)
        let (write, writev, read) = (1, 20, 0)
        #elseif arch(arm64)
        let (write, writev, read) = (64, 66, 63)
        #endif
        #if arch(x86_64) || arch(arm64)
        XCTAssertTrue(Watchdog.isWriteToStandardStream(syscallLine: "\(write) 0x1 0x7f12 0x40 0x0 0x0 0x0 0x7ffd 0x7f34\n"))
        XCTAssertTrue(Watchdog.isWriteToStandardStream(syscallLine: "\(writev) 0x2 0x7f12 0x2 0x0 0x0 0x0 0x7ffd 0x7f34\n"))
        XCTAssertFalse(Watchdog.isWriteToStandardStream(syscallLine: "\(write) 0x3 0x7f12 0x40 0x0 0x0 0x0 0x7ffd 0x7f34\n"), "a file")
        XCTAssertFalse(Watchdog.isWriteToStandardStream(syscallLine: "\(read) 0x1 0x7f12 0x40 0x0 0x0 0x0 0x7ffd 0x7f34\n"), "a read")
        #endif
        XCTAssertFalse(Watchdog.isWriteToStandardStream(syscallLine: "running\n"))
        XCTAssertFalse(Watchdog.isWriteToStandardStream(syscallLine: "-1 0x7ffd 0x7f34\n"))
        XCTAssertFalse(Watchdog.isWriteToStandardStream(syscallLine: ""))
    }

    /// This thread's own line: it is not writing now (the file is read while it runs, "running" or the read itself).
    func testThisThreadReadingItsOwnLineIsNotWaitingOnOutput() throws {
        let thread = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self")
        XCTAssertFalse(Watchdog.blockedWritingStandardStream(thread: thread))
        XCTAssertFalse(Watchdog.blockedWritingStandardStream(thread: nil))
    }

    func testTheWaitForOutputIsBounded() {
        XCTAssertEqual(Watchdog.outputWaitLimit(3), 1800)
        XCTAssertEqual(Watchdog.outputWaitLimit(600), 6000)
    }
}
