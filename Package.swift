// swift-tools-version:6.0
import PackageDescription

// One module per concern; data flows one way through the targets (each line depends only on lines above it):
//   CSystem -> Support       errors naming file/line/key, checksums, atomic writes, mapped files, clocks
//   Config (Yams)            YAML + --set -> typed, validated RunSpec; hostfiles
//   COpenBLAS, CDNNL, CKernels -> NN   tensors in arenas, kernels, GEMMs (fp32: OpenBLAS or oneDNN by shape; bf16: oneDNN), layers, losses, optimizers, safetensors
//   CMPI -> Communication    collectives (MPI or a single process)
//   TextEncoder (NN)         the frozen BERT-family sentence encoder
//   TrialData (NN, TextEncoder, Communication)   CSV, ICD-10, SMILES, featurization, feature stores
//   Model (NN)               the CLaDMoP DM branch and the prediction head
//   Reporting                metrics (AUCs, F1, bootstrap), SVG plots, markdown tables
//   Training (all above)     the distributed step, pretraining, fine-tuning, scoring, checkpoints, benchmarks
//   cladmop (Training, ArgumentParser)   one thin file per command
let optimize: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let package = Package(
    name: "cladmop",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "cladmop", targets: ["cladmop"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS",
                       providers: [.apt(["libopenblas-dev"])]),
        // oneDNN (Debian libdnnl-dev ships no dnnl.pc: the module map links libdnnl directly).
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL", providers: [.apt(["libdnnl-dev"])]),
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "Support", dependencies: ["CSystem"], swiftSettings: optimize),
        .target(name: "Config", dependencies: ["Support", .product(name: "Yams", package: "Yams")], swiftSettings: optimize),
        .target(name: "NN", dependencies: ["Support", "COpenBLAS", "CDNNL", "CKernels"], swiftSettings: optimize),
        .target(name: "Communication", dependencies: ["Support", "CMPI"], swiftSettings: optimize),
        .target(name: "TextEncoder", dependencies: ["Support", "NN"], swiftSettings: optimize),
        // fallocate, which Swift's Glibc does not declare (a GNU extension), and the SIGBUS handler of mapped files:
        // imported by FeatureStore.swift and Support's Files.swift only.
        .target(name: "CSystem"),
        .target(name: "TrialData", dependencies: ["Support", "NN", "TextEncoder", "Communication", "CSystem"], swiftSettings: optimize),
        .target(name: "Model", dependencies: ["Support", "NN"], swiftSettings: optimize),
        .target(name: "Reporting", dependencies: ["Support"], swiftSettings: optimize),
        .target(name: "Training", dependencies: ["Support", "Config", "NN", "Communication", "TextEncoder", "TrialData", "Model", "Reporting"],
                swiftSettings: optimize),
        .target(name: "TestSupport", dependencies: ["Support", "NN"], path: "Tests/Support"),
        .executableTarget(name: "MPISelfTest", dependencies: ["Communication", "Support"], swiftSettings: optimize),
        .executableTarget(name: "cladmop",
                          dependencies: ["Support", "Config", "NN", "Communication", "TextEncoder", "TrialData", "Model", "Reporting", "Training",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: optimize),
        .testTarget(name: "NNTests", dependencies: ["Support", "NN", "TestSupport"]),
        .testTarget(name: "CommunicationTests", dependencies: ["Communication", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["Support", "Config", "NN", "Reporting", "Training", "TrialData", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["Support", "NN", "Training", "TestSupport"]),
        .testTarget(name: "TextEncoderTests", dependencies: ["TextEncoder", "NN"]),
        .testTarget(name: "ModelTests", dependencies: ["Support", "Config", "Communication", "Model", "NN", "Training", "TestSupport"]),
        .testTarget(name: "TrialDataTests", dependencies: ["Support", "TrialData", "NN", "TextEncoder", "Communication", "Reporting", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
