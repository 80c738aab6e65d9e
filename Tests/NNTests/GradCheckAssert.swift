import NN
import TestSupport
import XCTest

func assertGradCheck(_ c: GradCheckCase, tolerance: Double = 1e-2, file: StaticString = #filePath, line: UInt = #line) {
    let report = gradCheck(c)
    print("gradcheck worst relative error: \(report.worst.error) (\(report.worst.name))")
    XCTAssertFalse(report.relativeErrors.isEmpty, file: file, line: line)
    for (name, err) in report.relativeErrors.sorted(by: { $0.key < $1.key }) {
        XCTAssertLessThan(err, tolerance, "gradient of \(name): relative error \(err)", file: file, line: line)
    }
}
