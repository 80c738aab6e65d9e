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

    @Option(help: "Encoder folder (config.json, vocab.txt, model.safetensors); default: encoder.model_dir of the configuration.")
    var modelDir: String?

    @Option(parsing: .unconditional, help: "Maximum WordPiece tokens per text, [CLS] and [SEP] included; default: encoder.max_tokens (its range).")
    var maxTokens: Int?

    @Option(help: "GEMM inputs of the encoder: fp32, or bf16 (products accumulated in fp32); default: encoder.precision.")
    var precision: PrecisionSpec?

    /// The `encoder` section (encoder.model_dir, max_tokens, precision) as featurize reads it; the flags above win.
    @OptionGroup var options: ConfigOptions

    func validate() throws {
        if let maxTokens, case .int(let range) = ConfigSchema.key("encoder.max_tokens")!.kind, !range.contains(maxTokens) {
            throw ValidationError("--max-tokens must be in \(range.lowerBound)...\(range.upperBound), as encoder.max_tokens (got \(maxTokens))")
        }
    }

    /// One line of the output.
    struct Line: Encodable { var text: String, coarse: [Float], medium: [Float], fine: [Float] }

    func run() throws {
        runJob { comm in
            let spec = try options.resolve(comm, reading: ["encoder.model_dir", "encoder.max_tokens", "encoder.precision", "train.stall_timeout"],
                                           why: "encode reads encoder.model_dir, encoder.max_tokens, encoder.precision and train.stall_timeout")
            let modelDir = self.modelDir ?? spec.encoder.modelDir, maxTokens = self.maxTokens ?? spec.encoder.maxTokens
            try checkOutputs([("--output", output)], inputs: [("--input", input)], isRoot: comm.isRoot)
            // LF, CR LF or a lone CR end a line (readTextLines).
            let lines = try readTextLines(input, what: "text file (one text per line)").lines
            guard !lines.isEmpty else { throw InputError(file: input, "no lines to encode (expected one text per line)") }
            let encoder = try BertEncoder(modelDir: modelDir, maxLength: maxTokens,
                                          precision: resolvedPrecision(precision ?? spec.encoder.precision,
                                                                             key: precision != nil ? "--precision" : "encoder.precision", comm: comm))
            let d = encoder.hidden
            let out = FloatPtr.allocate(capacity: max(lines.count * 3 * d, 1))
            defer { out.deallocate() }
            encoder.encode(texts: lines, into: out)
            guard comm.isRoot else { return }
            // Lines that lose their text: said, as they would otherwise look like any other vector.
            let pieces = lines.map { encoder.tokenizer.wordPieceCount($0) }
            let empty = pieces.filter { $0 == 0 }.count, cut = pieces.filter { $0 > maxTokens - 2 }.count
            if empty > 0 {
                standardErrorWrite(Data(("warning: \(empty) of the \(lines.count) lines of \(input) hold no word (empty, spaces, or only "
                    + "characters the tokenizer drops): each is encoded as [CLS] [SEP] alone, one and the same vector\n").utf8))
            }
            if cut > 0 {
                standardErrorWrite(Data(("warning: \(cut) of the \(lines.count) lines of \(input) are longer than \(self.maxTokens != nil ? "--max-tokens" : "encoder.max_tokens") \(maxTokens) "
                    + "([CLS] and [SEP] included): each is encoded from its first \(maxTokens - 2) word pieces\n").utf8))
            }
            try writeFileAtomically(output) { h in
                for (i, line) in lines.enumerated() {
                    func vec(_ level: Int) -> [Float] { Array(UnsafeBufferPointer(start: out + (i * 3 + level) * d, count: d)) }
                    try h.write(contentsOf: encodeJSON(Line(text: line, coarse: vec(0), medium: vec(1), fine: vec(2)), plainSlashes: true))
                    try h.write(contentsOf: Data("\n".utf8))
                }
            }
        }
    }
}

extension PrecisionSpec: ExpressibleByArgument {}
