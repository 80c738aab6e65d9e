/// Whether `id` is exactly "NCT" followed by 8 ASCII digits (no spaces, no other digits, no lower case): a trial id of
/// the CSVs, the held-out list and the stores, recognised by one test (also where outputs are checked against inputs).
public func isNCTID(_ id: String) -> Bool {
    let u = Array(id.utf8)
    return u.count == 11 && u[0] == UInt8(ascii: "N") && u[1] == UInt8(ascii: "C") && u[2] == UInt8(ascii: "T")
        && u[3...].allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
}
