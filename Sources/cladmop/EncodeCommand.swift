import Support
import ArgumentParser
import Communication
import Config
import TrialData
import Foundation
import NN
import TextEncoder
import Training

struct Encode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Embed text lines with the frozen encoder: one JSON object per line with coarse, medium, fine vectors.")

    @Option(help: "Text file, one text per line.")
    var input: String

    @Option(help: "JSON-lines output: {\"text\", \"coarse\", \"medium\", \"fine\"} per input line.")
    var output: String

    @Option(help: "Encoder folder (config.json, vocab.txt, model.safetensors).")
    var modelDir: String = "models/all-MiniLM-L6-v2"

    @Option(help: "Maximum WordPiece tokens per text, [CLS] and [SEP] included (8-512, as encoder.max_tokens).")
    var maxTokens: Int = 256

    @Option(help: "GEMM inputs of the encoder, as encoder.precision: fp32, or bf16 (products accumulated in fp32).")
    var precision: PrecisionSpec = .fp32

    func validate() throws {
        guard (8...512).contains(maxTokens) else { throw ValidationError("--max-tokens must be in 8...512, as encoder.max_tokens (got \(maxTokens))") }
    }

    func run() throws {
        runJob { comm in
            try checkOutputs([("--output", output)], inputs: [("--input", input)], isRoot: comm.isRoot)
            // LF, CR LF or a lone CR end a line (readTextLines).
            let lines = try readTextLines(input, what: "text file (one text per line)").lines
            let encoder = try BertEncoder(modelDir: modelDir, maxLength: maxTokens,
                                          precision: resolvedPrecision(precision, key: "--precision", comm: comm))
            let d = encoder.hidden
            let out = FloatPtr.allocate(capacity: max(lines.count * 3 * d, 1))
            defer { out.deallocate() }
            encoder.encode(texts: lines, into: out)
            guard comm.isRoot else { return }
            try writeFileAtomically(output) { h in
                for (i, line) in lines.enumerated() {
                    func vec(_ level: Int) -> [Double] { (0..<d).map { Double(out[(i * 3 + level) * d + $0]) } }
                    let obj: [String: Any] = ["text": line, "coarse": vec(0), "medium": vec(1), "fine": vec(2)]
                    try h.write(contentsOf: JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]))
                    try h.write(contentsOf: Data("\n".utf8))
                }
            }
        }
    }
}

extension PrecisionSpec: ExpressibleByArgument {}
