package dev.kora.tests;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Kafka's own command-line tools, run as an operator runs them: a fresh JVM per command, the
 * tool's main class (what bin/kafka-*.sh call), Apache Kafka's jars on the class path.
 */
final class Tools {
    /** What a tool printed and how it ended. */
    record Result(int exit, String out, String err) {
        Result ok() {
            if (exit != 0) {
                throw new AssertionError("exit " + exit + "\nstdout:\n" + out + "\nstderr:\n" + err);
            }
            return this;
        }

        @Override
        public String toString() {
            return "exit " + exit + "\nstdout:\n" + out + "\nstderr:\n" + err;
        }
    }

    static final String TOPICS = "org.apache.kafka.tools.TopicCommand";
    static final String CONFIGS = "kafka.admin.ConfigCommand";
    static final String CONSUMER_GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
    static final String CONSOLE_PRODUCER = "org.apache.kafka.tools.ConsoleProducer";
    static final String CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer";
    static final String GET_OFFSETS = "org.apache.kafka.tools.GetOffsetShell";
    static final String DELETE_RECORDS = "org.apache.kafka.tools.DeleteRecordsCommand";
    static final String REASSIGN = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand";
    static final String LEADER_ELECTION = "org.apache.kafka.tools.LeaderElectionCommand";
    static final String PRODUCER_PERF = "org.apache.kafka.tools.ProducerPerformance";
    static final String CONSUMER_PERF = "org.apache.kafka.tools.ConsumerPerformance";
    static final String VERIFIABLE_PRODUCER = "org.apache.kafka.tools.VerifiableProducer";
    static final String VERIFIABLE_CONSUMER = "org.apache.kafka.tools.VerifiableConsumer";
    static final String LOG_DIRS = "org.apache.kafka.tools.LogDirsCommand";
    static final String API_VERSIONS = "org.apache.kafka.tools.BrokerApiVersionsCommand";
    static final String CLUSTER = "org.apache.kafka.tools.ClusterTool";

    private Tools() {
    }

    /** Apache Kafka's class path: written by the build (dependency:build-classpath). */
    static String classpath() throws IOException {
        String file = System.getProperty("kafka.classpath.file", "target/kafka.classpath");
        return Files.readString(Path.of(file), StandardCharsets.UTF_8).trim();
    }

    static Result run(String mainClass, String... args) throws Exception {
        return runWithInput(null, mainClass, args);
    }

    /** Runs a tool with {@code input} on its stdin (null: none), for at most two minutes. */
    static Result runWithInput(String input, String mainClass, String... args) throws Exception {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.add("-Xmx256m");
        cmd.add("-cp");
        cmd.add(classpath());
        cmd.add(mainClass);
        cmd.addAll(List.of(args));
        Path out = Files.createTempFile("tool", ".out");
        Path err = Files.createTempFile("tool", ".err");
        try {
            ProcessBuilder pb = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile());
            if (input == null) {
                pb.redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
            }
            Process p = pb.start();
            if (input != null) {
                try (var stdin = p.getOutputStream()) {
                    stdin.write(input.getBytes(StandardCharsets.UTF_8));
                }
            }
            if (!p.waitFor(120, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new AssertionError(mainClass + " did not finish in 120 s:\n" + Files.readString(out) + Files.readString(err));
            }
            return new Result(p.exitValue(), Files.readString(out), Files.readString(err));
        } finally {
            Files.deleteIfExists(out);
            Files.deleteIfExists(err);
        }
    }
}
