package dev.kora.tests;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A real Kora on 127.0.0.1, started as a user would: {@code kora dev} (one process) or
 * {@code kora cell up} (brokers and voters as separate processes), each in a fresh temporary
 * directory. The first line Kora prints (JSON) says where it listens.
 */
public final class KoraProcess implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Process process;
    private final Path dir;
    private final Path stderr;
    private final JsonNode info;
    /** Environment added to the server's and to {@link #cli}'s (KORA_CONFIG_DIR for {@code devAuth}). */
    private final Map<String, String> env;

    private KoraProcess(Path dir, List<String> args) throws IOException {
        this(dir, args, Map.of());
    }

    private KoraProcess(Path dir, List<String> args, Map<String, String> env) throws IOException {
        this.dir = dir;
        this.stderr = dir.resolve("kora.err");
        this.env = Map.copyOf(env);
        List<String> cmd = new ArrayList<>();
        cmd.add(bin());
        cmd.addAll(args);
        ProcessBuilder pb = new ProcessBuilder(cmd)
                .redirectError(stderr.toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
        pb.environment().putAll(this.env);
        this.process = pb.start();
        BufferedReader out = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
        String line = out.readLine();
        if (line == null) {
            throw new IllegalStateException("kora " + args + " printed nothing:\n" + tail());
        }
        this.info = JSON.readTree(line);
        // Drain the rest of stdout so the process never blocks on a full pipe.
        Thread drain = new Thread(() -> {
            try {
                while (out.readLine() != null) {
                    // discard
                }
            } catch (IOException ignored) {
                // the process ended
            }
        }, "kora-stdout");
        drain.setDaemon(true);
        drain.start();
    }

    /** The kora binary under test (the build's debug binary unless -Dkora.bin says otherwise). */
    public static String bin() {
        String bin = System.getProperty("kora.bin", System.getenv().getOrDefault("KORA_BIN", "../../target/debug/kora"));
        if (!Files.isExecutable(Path.of(bin))) {
            throw new IllegalStateException("no kora binary at " + bin + " (build it: cargo build -p kora)");
        }
        return Path.of(bin).toAbsolutePath().toString();
    }

    /** {@code kora dev}: the embedded single-node cluster. */
    public static KoraProcess dev(String... extra) throws IOException {
        Path dir = Files.createTempDirectory("kora-java-dev");
        List<String> args = new ArrayList<>(List.of("--output", "json", "dev", "--data-dir", dir.resolve("data").toString(),
                "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"));
        args.addAll(List.of(extra));
        return new KoraProcess(dir, args);
    }

    /**
     * {@code kora dev --auth}: a SASL_PLAINTEXT listener (PLAIN, SCRAM-SHA-256/512) and a tenant
     * {@code dev} whose first API key is {@link #apiKey()}. KORA_CONFIG_DIR is a directory of its
     * own, so {@link #cli} finds this process's operator token and no other.
     */
    public static KoraProcess devAuth(String... extra) throws IOException {
        Path dir = Files.createTempDirectory("kora-java-dev-auth");
        List<String> args = new ArrayList<>(List.of("--output", "json", "dev", "--auth", "--data-dir", dir.resolve("data").toString(),
                "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"));
        args.addAll(List.of(extra));
        return new KoraProcess(dir, args, Map.of("KORA_CONFIG_DIR", dir.resolve("config").toString()));
    }

    /** {@code kora cell up}: a cell of {@code brokers} brokers and three metadata voters. */
    public static KoraProcess cell(int brokers, String... extra) throws IOException {
        Path dir = Files.createTempDirectory("kora-java-cell");
        List<String> args = new ArrayList<>(List.of("cell", "up", "--brokers", Integer.toString(brokers), "--voters", "3",
                "--output", "json", "--data-dir", dir.resolve("cell").toString()));
        args.addAll(List.of(extra));
        return new KoraProcess(dir, args);
    }

    public String bootstrap() {
        return info.get("bootstrap").asText();
    }

    public JsonNode info() {
        return info;
    }

    public Path dir() {
        return dir;
    }

    /** The admin HTTP URL (http://host:port). */
    public String admin() {
        return info.get("admin").asText();
    }

    /** {@code kora dev --auth}'s API key: {key, secret, tenant}; null without --auth. */
    public JsonNode apiKey() {
        JsonNode k = info.get("api_key");
        return k == null || k.isNull() ? null : k;
    }

    /** What one CLI command printed and how it ended. */
    public record CliResult(int exit, String out, String err) {
        /** Its JSON answer; fails unless it exited 0. */
        public JsonNode json() throws IOException {
            if (exit != 0) {
                throw new AssertionError("kora CLI exit " + exit + "\nstdout:\n" + out + "\nstderr:\n" + err);
            }
            return JSON.readTree(out);
        }
    }

    /** Runs {@code kora --output json ARGS --admin <this admin>} with this process's environment, for at most a minute. */
    public CliResult run(String... args) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>(List.of(bin(), "--output", "json"));
        cmd.addAll(List.of(args));
        cmd.addAll(List.of("--admin", admin()));
        Path out = Files.createTempFile(dir, "cli", ".out");
        Path err = Files.createTempFile(dir, "cli", ".err");
        try {
            ProcessBuilder pb = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile())
                    .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
            pb.environment().putAll(env);
            Process p = pb.start();
            if (!p.waitFor(60, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new AssertionError("kora " + String.join(" ", args) + " did not finish in 60 s");
            }
            return new CliResult(p.exitValue(), Files.readString(out), Files.readString(err));
        } finally {
            Files.deleteIfExists(out);
            Files.deleteIfExists(err);
        }
    }

    /** {@link #run}, which must succeed: its parsed JSON answer. */
    public JsonNode cli(String... args) throws IOException, InterruptedException {
        return run(args).json();
    }

    /** The end of what Kora wrote to stderr, and of each cell process's log, for failure messages. */
    public String tail() {
        StringBuilder sb = new StringBuilder();
        appendTail(sb, stderr);
        Path logs = dir.resolve("cell").resolve("logs");
        if (Files.isDirectory(logs)) {
            try (Stream<Path> files = Files.list(logs)) {
                files.forEach(f -> appendTail(sb, f));
            } catch (IOException ignored) {
                // nothing more to show
            }
        }
        return sb.toString();
    }

    private static void appendTail(StringBuilder sb, Path f) {
        try {
            List<String> lines = Files.readAllLines(f, StandardCharsets.UTF_8);
            sb.append("--- ").append(f).append('\n');
            lines.subList(Math.max(0, lines.size() - 20), lines.size()).forEach(l -> sb.append(l).append('\n'));
        } catch (IOException ignored) {
            // no such file yet
        }
    }

    @Override
    public void close() throws Exception {
        process.destroy(); // SIGTERM: a controlled shutdown
        if (!process.waitFor(30, TimeUnit.SECONDS)) {
            process.destroyForcibly();
            process.waitFor(10, TimeUnit.SECONDS);
        }
        deleteTree(dir);
    }

    static void deleteTree(Path dir) throws IOException {
        if (!Files.exists(dir)) {
            return;
        }
        try (Stream<Path> paths = Files.walk(dir)) {
            paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }
}
