// libFuzzer entry point for the TOP CSV path: CSV records -> trials (list literals, nested ICD lists) ->
// SMILES tokens. Any input must give trials or an InputError, never a crash. Built by Tests/Fuzz/run.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCSV(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    guard let records = try? parseCSV(data: bytes, name: "fuzz.csv") else { return 0 }
    var skipped: [String] = []
    guard let trials = try? parseTrials(records: records, file: "fuzz.csv", skipBadRows: true, skipped: &skipped) else { return 0 }
    for t in trials { for s in t.smiles { _ = try? tokenizeSMILES(s) } }
    return 0
}
