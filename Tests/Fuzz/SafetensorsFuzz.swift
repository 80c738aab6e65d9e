// libFuzzer entry point for the safetensors header parser: any bytes must give a validated header or an
// InputError, never a crash or an out-of-bounds read; every accepted tensor lies inside the payload.
// Built by Tests/Fuzz/run.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    guard let (tensors, _, dataStart) = try? SafetensorsFile.parseHeader(bytes, path: "fuzz.safetensors") else { return 0 }
    for t in tensors.values {
        precondition(t.begin >= 0 && t.begin <= t.end && dataStart + t.end <= size, "accepted tensor \(t.name) outside the file")
    }
    return 0
}
