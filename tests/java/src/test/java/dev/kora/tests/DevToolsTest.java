package dev.kora.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/** Kafka's command-line tools against {@code kora dev}. */
class DevToolsTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    @RegisterExtension
    static final KoraExtension kora = KoraExtension.dev();

    static String topic(String what) {
        return ClientSuite.unique("tool-" + what);
    }

    /** topic:partition -> offset, as kafka-get-offsets prints it. */
    static Map<Integer, Long> offsets(String topic, String time) throws Exception {
        String out = Tools.run(Tools.GET_OFFSETS, "--bootstrap-server", kora.bootstrap(), "--topic", topic, "--time", time).ok().out();
        return Arrays.stream(out.split("\n"))
                .filter(l -> l.startsWith(topic + ":"))
                .map(l -> l.substring(topic.length() + 1).split(":"))
                .collect(Collectors.toMap(p -> Integer.parseInt(p[0]), p -> Long.parseLong(p[1])));
    }

    static void produce(String topic, String lines) throws Exception {
        Tools.runWithInput(lines, Tools.CONSOLE_PRODUCER, "--bootstrap-server", kora.bootstrap(), "--topic", topic,
                "--property", "parse.key=true", "--property", "key.separator=:").ok();
    }

    @Test
    void kafkaTopicsCreatesListsDescribesAltersAndDeletes() throws Exception {
        String t = topic("topics");
        Tools.run(Tools.TOPICS, "--bootstrap-server", kora.bootstrap(), "--create", "--topic", t, "--partitions", "3",
                "--replication-factor", "1", "--config", "retention.ms=1000000").ok();
        Tools.Result again = Tools.run(Tools.TOPICS, "--bootstrap-server", kora.bootstrap(), "--create", "--topic", t, "--partitions", "3");
        assertTrue(again.exit() != 0 && (again.out() + again.err()).contains("already exists"), again.toString());
        assertTrue(Tools.run(Tools.TOPICS, "--bootstrap-server", kora.bootstrap(), "--list").ok().out().lines().anyMatch(t::equals));
        String d = Tools.run(Tools.TOPICS, "--bootstrap-server", kora.bootstrap(), "--describe", "--topic", t).ok().out();
        assertTrue(d.contains("PartitionCount: 3") && d.contains("retention.ms=1000000"), d);
        Tools.run(Tools.TOPICS, "--bootstrap-server", kora.bootstrap(), "--alter", "--topic", t, "--partitions", "5").ok();
        d = Tools.run(Tools.TOPICS, "--bootstrap-server", kora.bootstrap(), "--describe", "--topic", t).ok().out();
        assertTrue(d.contains("PartitionCount: 5"), d);
        Tools.run(Tools.TOPICS, "--bootstrap-server", kora.bootstrap(), "--delete", "--topic", t).ok();
        long deadline = System.nanoTime() + 30_000_000_000L;
        boolean listed = true;
        while (listed && System.nanoTime() < deadline) {
            listed = Tools.run(Tools.TOPICS, "--bootstrap-server", kora.bootstrap(), "--list").ok().out().lines().anyMatch(t::equals);
        }
        assertTrue(!listed, "deleted topic is no longer listed");
    }

    @Test
    void kafkaConfigsAltersAndDescribesTopicAndBrokerConfigs() throws Exception {
        String t = topic("configs");
        Tools.run(Tools.TOPICS, "--bootstrap-server", kora.bootstrap(), "--create", "--topic", t, "--partitions", "1").ok();
        Tools.run(Tools.CONFIGS, "--bootstrap-server", kora.bootstrap(), "--entity-type", "topics", "--entity-name", t,
                "--alter", "--add-config", "retention.ms=5000,max.message.bytes=2000000").ok();
        String d = Tools.run(Tools.CONFIGS, "--bootstrap-server", kora.bootstrap(), "--entity-type", "topics", "--entity-name", t,
                "--describe").ok().out();
        assertTrue(d.contains("retention.ms=5000") && d.contains("max.message.bytes=2000000"), d);
        Tools.run(Tools.CONFIGS, "--bootstrap-server", kora.bootstrap(), "--entity-type", "topics", "--entity-name", t,
                "--alter", "--delete-config", "retention.ms").ok();
        d = Tools.run(Tools.CONFIGS, "--bootstrap-server", kora.bootstrap(), "--entity-type", "topics", "--entity-name", t,
                "--describe").ok().out();
        assertTrue(!d.contains("retention.ms=5000") && d.contains("max.message.bytes=2000000"), d);
        Tools.Result bad = Tools.run(Tools.CONFIGS, "--bootstrap-server", kora.bootstrap(), "--entity-type", "topics", "--entity-name", t,
                "--alter", "--add-config", "retention.ms=soon");
        assertTrue(bad.exit() != 0 && (bad.err() + bad.out()).contains("retention.ms"), bad.toString());
        String b = Tools.run(Tools.CONFIGS, "--bootstrap-server", kora.bootstrap(), "--entity-type", "brokers", "--entity-name", "1",
                "--describe", "--all").ok().out();
        assertTrue(b.contains("log.segment.bytes="), b);
    }

    @Test
    void consoleProducerAndConsumerRoundTripKeysAndValues() throws Exception {
        String t = topic("console");
        Tools.run(Tools.TOPICS, "--bootstrap-server", kora.bootstrap(), "--create", "--topic", t, "--partitions", "1").ok();
        produce(t, "k1:hello\nk2:world\nk3:from the console\n");
        String out = Tools.run(Tools.CONSOLE_CONSUMER, "--bootstrap-server", kora.bootstrap(), "--topic", t, "--from-beginning",
                "--max-messages", "3", "--timeout-ms", "60000", "--property", "print.key=true",
                "--property", "key.separator=:").ok().out();
        assertEquals(List.of("k1:hello", "k2:world", "k3:from the console"), out.lines().toList());
    }

    @Test
    void consumerGroupsDescribeResetAndDelete() throws Exception {
        String t = topic("groups");
        String g = ClientSuite.unique("tool-group");
        Tools.run(Tools.TOPICS, "--bootstrap-server", kora.bootstrap(), "--create", "--topic", t, "--partitions", "2").ok();
        produce(t, "a:1\nb:2\nc:3\nd:4\ne:5\nf:6\n");
        Tools.run(Tools.CONSOLE_CONSUMER, "--bootstrap-server", kora.bootstrap(), "--topic", t, "--group", g, "--from-beginning",
                "--max-messages", "6", "--timeout-ms", "60000").ok();
        assertTrue(Tools.run(Tools.CONSUMER_GROUPS, "--bootstrap-server", kora.bootstrap(), "--list").ok().out().lines().anyMatch(g::equals));
        String d = Tools.run(Tools.CONSUMER_GROUPS, "--bootstrap-server", kora.bootstrap(), "--describe", "--group", g).ok().out();
        // Every partition committed at its end: lag 0 on each row.
        List<String[]> rows = d.lines().filter(l -> l.startsWith(g + " ")).map(l -> l.trim().split("\\s+")).toList();
        assertEquals(2, rows.size(), d);
        long committed = 0;
        for (String[] r : rows) {
            assertEquals(t, r[1]);
            assertEquals(r[3], r[4], "current offset is the log end: " + d);
            assertEquals("0", r[5], d);
            committed += Long.parseLong(r[3]);
        }
        assertEquals(6, committed);
        String reset = Tools.run(Tools.CONSUMER_GROUPS, "--bootstrap-server", kora.bootstrap(), "--group", g, "--topic", t,
                "--reset-offsets", "--to-earliest", "--execute").ok().out();
        assertTrue(reset.contains(t), reset);
        d = Tools.run(Tools.CONSUMER_GROUPS, "--bootstrap-server", kora.bootstrap(), "--describe", "--group", g).ok().out();
        long lag = d.lines().filter(l -> l.startsWith(g + " ")).map(l -> l.trim().split("\\s+"))
                .mapToLong(r -> Long.parseLong(r[5])).sum();
        assertEquals(6, lag, "reset to the earliest offsets: everything is lag again\n" + d);
        Tools.run(Tools.CONSUMER_GROUPS, "--bootstrap-server", kora.bootstrap(), "--delete", "--group", g).ok();
        assertTrue(Tools.run(Tools.CONSUMER_GROUPS, "--bootstrap-server", kora.bootstrap(), "--list").ok().out().lines().noneMatch(g::equals));
    }

    @Test
    void getOffsetsAndDeleteRecords() throws Exception {
        String t = topic("offsets");
        Tools.run(Tools.TOPICS, "--bootstrap-server", kora.bootstrap(), "--create", "--topic", t, "--partitions", "1").ok();
        produce(t, "a:1\nb:2\nc:3\nd:4\ne:5\n");
        assertEquals(Map.of(0, 5L), offsets(t, "-1"));
        assertEquals(Map.of(0, 0L), offsets(t, "-2"));
        Path f = Files.createTempFile("delete-records", ".json");
        Files.writeString(f, "{\"version\":1,\"partitions\":[{\"topic\":\"" + t + "\",\"partition\":0,\"offset\":3}]}");
        String out = Tools.run(Tools.DELETE_RECORDS, "--bootstrap-server", kora.bootstrap(), "--offset-json-file", f.toString()).ok().out();
        assertTrue(out.contains("low_watermark: 3"), out);
        assertEquals(Map.of(0, 3L), offsets(t, "-2"));
        Files.delete(f);
    }

    @Test
    void producerAndConsumerPerfTests() throws Exception {
        String t = topic("perf");
        Tools.run(Tools.TOPICS, "--bootstrap-server", kora.bootstrap(), "--create", "--topic", t, "--partitions", "2").ok();
        String p = Tools.run(Tools.PRODUCER_PERF, "--topic", t, "--num-records", "20000", "--record-size", "100",
                "--throughput", "-1", "--producer-props", "bootstrap.servers=" + kora.bootstrap(), "acks=all").ok().out();
        assertTrue(p.contains("20000 records sent"), p);
        String c = Tools.run(Tools.CONSUMER_PERF, "--bootstrap-server", kora.bootstrap(), "--topic", t, "--messages", "20000",
                "--timeout", "60000").ok().out();
        // The header, then one line of figures: data.consumed.in.nMsg is the 5th column.
        List<String> lines = c.lines().filter(l -> !l.isBlank()).toList();
        String[] header = lines.get(lines.size() - 2).split(",\\s*");
        String[] figures = lines.get(lines.size() - 1).split(",\\s*");
        int nMsg = Arrays.asList(header).indexOf("data.consumed.in.nMsg");
        assertTrue(nMsg >= 0, c);
        assertEquals(20000, Long.parseLong(figures[nMsg].trim()), c);
        assertEquals(20000L, offsets(t, "-1").values().stream().mapToLong(Long::longValue).sum());
    }

    @Test
    void verifiableProducerAndConsumer() throws Exception {
        String t = topic("verifiable");
        Tools.run(Tools.TOPICS, "--bootstrap-server", kora.bootstrap(), "--create", "--topic", t, "--partitions", "2").ok();
        String p = Tools.run(Tools.VERIFIABLE_PRODUCER, "--bootstrap-server", kora.bootstrap(), "--topic", t, "--max-messages", "500",
                "--acks", "-1").ok().out();
        JsonNode data = null;
        int acked = 0;
        for (String l : p.lines().toList()) {
            JsonNode e = JSON.readTree(l);
            if ("producer_send_success".equals(e.path("name").asText())) {
                acked++;
            }
            if ("tool_data".equals(e.path("name").asText())) {
                data = e;
            }
        }
        assertEquals(500, acked, p);
        assertTrue(data != null && data.get("acked").asInt() == 500 && data.get("sent").asInt() == 500, p);

        String g = ClientSuite.unique("verifiable");
        String c = Tools.run(Tools.VERIFIABLE_CONSUMER, "--bootstrap-server", kora.bootstrap(), "--topic", t, "--group-id", g,
                "--max-messages", "500").ok().out();
        int consumed = 0;
        boolean committed = false;
        for (String l : c.lines().toList()) {
            JsonNode e = JSON.readTree(l);
            String name = e.path("name").asText();
            if (name.equals("records_consumed")) {
                consumed += e.get("count").asInt();
            }
            if (name.equals("offsets_committed") && e.get("success").asBoolean()) {
                committed = true;
            }
        }
        assertEquals(500, consumed, c);
        assertTrue(committed, c);
    }

    @Test
    void leaderElectionOverEveryPartitionOfASingleNode() throws Exception {
        String t = topic("elect");
        Tools.run(Tools.TOPICS, "--bootstrap-server", kora.bootstrap(), "--create", "--topic", t, "--partitions", "3").ok();
        // One broker leads everything: every partition, internal ones too, needs no election.
        String out = Tools.run(Tools.LEADER_ELECTION, "--bootstrap-server", kora.bootstrap(), "--election-type",
                "PREFERRED", "--all-topic-partitions").ok().out();
        assertTrue(out.contains("Valid replica already elected for partitions") && out.contains(t + "-2"), out);
        Tools.Result unknown = Tools.run(Tools.LEADER_ELECTION, "--bootstrap-server", kora.bootstrap(),
                "--election-type", "PREFERRED", "--topic", t, "--partition", "3");
        assertTrue(unknown.exit() != 0 && (unknown.out() + unknown.err()).contains("UnknownTopicOrPartition"), unknown.toString());
    }

    @Test
    void logDirsApiVersionsAndClusterId() throws Exception {
        String t = topic("logdirs");
        Tools.run(Tools.TOPICS, "--bootstrap-server", kora.bootstrap(), "--create", "--topic", t, "--partitions", "2").ok();
        produce(t, "a:1\nb:2\n");
        String out = Tools.run(Tools.LOG_DIRS, "--bootstrap-server", kora.bootstrap(), "--describe", "--broker-list", "1",
                "--topic-list", t).ok().out();
        JsonNode report = JSON.readTree(out.lines().filter(l -> l.startsWith("{")).findFirst().orElseThrow());
        JsonNode dir = report.get("brokers").get(0).get("logDirs").get(0);
        assertTrue(dir.get("error").isNull(), out);
        assertEquals(2, dir.get("partitions").size(), out);

        String v = Tools.run(Tools.API_VERSIONS, "--bootstrap-server", kora.bootstrap()).ok().out();
        assertTrue(v.contains("Produce(0): 3 to 13") && v.contains("Fetch(1): 4 to 17"), v);

        String id = Tools.run(Tools.CLUSTER, "cluster-id", "--bootstrap-server", kora.bootstrap()).ok().out();
        Matcher m = Pattern.compile("Cluster ID: (\\S+)").matcher(id);
        assertTrue(m.find(), id);
        assertEquals(kora.info().get("cluster_id").asText(), m.group(1));
    }
}
