package dev.kora.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import com.fasterxml.jackson.databind.JsonNode;
import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.SaslConfigs;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Tenants on {@code kora dev --auth} with the Java client and Kafka's tools: SASL PLAIN and
 * SCRAM logins (username = API key, password = secret), tenants created with {@code kora
 * tenant create} that each see their own cluster, and KIP-368 re-authentication.
 */
class TenantsTest {
    @RegisterExtension
    static final KoraExtension kora = KoraExtension.devAuth();

    /** The JAAS line of a mechanism (PLAIN or SCRAM-SHA-256/512) for one API key. */
    static String jaas(String mechanism, String user, String password) {
        String module = mechanism.equals("PLAIN")
                ? "org.apache.kafka.common.security.plain.PlainLoginModule"
                : "org.apache.kafka.common.security.scram.ScramLoginModule";
        return module + " required username=\"" + user + "\" password=\"" + password + "\";";
    }

    /** Client settings of a SASL_PLAINTEXT login with {@code key} ({key, secret}). */
    static Properties sasl(String bootstrap, JsonNode key, String mechanism) {
        return sasl(bootstrap, key.get("key").asText(), key.get("secret").asText(), mechanism);
    }

    static Properties sasl(String bootstrap, String user, String password, String mechanism) {
        Properties p = new Properties();
        p.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(CommonClientConfigs.SECURITY_PROTOCOL_CONFIG, "SASL_PLAINTEXT");
        p.put(SaslConfigs.SASL_MECHANISM, mechanism);
        p.put(SaslConfigs.SASL_JAAS_CONFIG, jaas(mechanism, user, password));
        return p;
    }

    static Admin admin(Properties auth) {
        Properties p = new Properties();
        p.putAll(auth);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30_000);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 20_000);
        return Admin.create(p);
    }

    static KafkaProducer<String, String> producer(Properties auth) {
        Properties p = new Properties();
        p.putAll(auth);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 30_000);
        return new KafkaProducer<>(p);
    }

    static KafkaConsumer<String, String> consumer(Properties auth, String group) {
        Properties p = new Properties();
        p.putAll(auth);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        return new KafkaConsumer<>(p);
    }

    static void produce(Properties auth, String topic, List<String> values) throws Exception {
        try (KafkaProducer<String, String> p = producer(auth)) {
            List<java.util.concurrent.Future<?>> sent = new ArrayList<>();
            for (String v : values) {
                sent.add(p.send(new ProducerRecord<>(topic, v)));
            }
            p.flush();
            for (var f : sent) {
                f.get(30, TimeUnit.SECONDS);
            }
        }
    }

    /** Reads {@code n} records of {@code topic} in {@code group}, commits, and returns their values. */
    static List<String> consumeAndCommit(Properties auth, String topic, String group, int n) {
        List<String> got = new ArrayList<>();
        try (KafkaConsumer<String, String> c = consumer(auth, group)) {
            c.subscribe(List.of(topic));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (got.size() < n && System.nanoTime() < deadline) {
                c.poll(Duration.ofMillis(300)).forEach(r -> got.add(r.value()));
            }
            c.commitSync(Duration.ofSeconds(30));
        }
        return got;
    }

    static long committed(Admin a, String group) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> offsets =
                a.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
        return offsets.values().stream().mapToLong(OffsetAndMetadata::offset).sum();
    }

    /** {@code kora tenant create NAME}: its first API key, checked against the tenant. */
    static JsonNode newTenant(String name) throws Exception {
        JsonNode created = kora.cli("tenant", "create", name);
        assertEquals(name, created.get("tenant").get("name").asText(), created.toString());
        String id = created.get("tenant").get("id").asText();
        assertTrue(id.startsWith("lkc-"), created.toString());
        JsonNode key = created.get("api_key");
        assertEquals(id, key.get("tenant").asText(), created.toString());
        return key;
    }

    @ParameterizedTest(name = "sasl.mechanism={0}")
    @ValueSource(strings = {"SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"})
    void producerConsumerAndAdminLogInWithTheDevKey(String mechanism) throws Exception {
        JsonNode key = kora.apiKey();
        Properties auth = sasl(kora.bootstrap(), key, mechanism);
        String topic = ClientSuite.unique("sasl-" + mechanism.toLowerCase());
        String group = ClientSuite.unique("g-" + mechanism.toLowerCase());
        try (Admin a = admin(auth)) {
            a.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get(30, TimeUnit.SECONDS);
            // A tenant's cluster id is its logical cluster's id.
            assertEquals(key.get("tenant").asText(), a.describeCluster().clusterId().get(30, TimeUnit.SECONDS));
            assertTrue(a.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic));
        }
        List<String> values = List.of("one", "two", "three", "four", "five");
        produce(auth, topic, values);
        List<String> got = consumeAndCommit(auth, topic, group, values.size());
        assertEquals(Set.copyOf(values), Set.copyOf(got), "every record read back");
        assertEquals(values.size(), got.size());
        try (Admin a = admin(auth)) {
            assertEquals(values.size(), committed(a, group), "the group committed what it read");
        }
    }

    @ParameterizedTest(name = "sasl.mechanism={0}")
    @ValueSource(strings = {"SCRAM-SHA-512", "PLAIN"})
    void aWrongPasswordFailsWithSaslAuthenticationException(String mechanism) throws Exception {
        JsonNode key = kora.apiKey();
        Properties bad = sasl(kora.bootstrap(), key.get("key").asText(), "not-the-secret", mechanism);
        long started = System.nanoTime();
        try (Admin a = admin(bad)) {
            ExecutionException e = assertThrows(ExecutionException.class,
                    () -> a.listTopics().names().get(60, TimeUnit.SECONDS));
            assertInstanceOf(SaslAuthenticationException.class, e.getCause(), e.toString());
        }
        long seconds = TimeUnit.NANOSECONDS.toSeconds(System.nanoTime() - started);
        assertTrue(seconds < 20, "failed after " + seconds + " s, not at once");
        // An unknown key fails the same way, and the broker still serves good logins.
        try (Admin a = admin(sasl(kora.bootstrap(), "NOSUCHKEY", "x", mechanism))) {
            ExecutionException e = assertThrows(ExecutionException.class,
                    () -> a.listTopics().names().get(60, TimeUnit.SECONDS));
            assertInstanceOf(SaslAuthenticationException.class, e.getCause(), e.toString());
        }
        try (Admin a = admin(sasl(kora.bootstrap(), key, mechanism))) {
            assertEquals(key.get("tenant").asText(), a.describeCluster().clusterId().get(30, TimeUnit.SECONDS));
        }
    }

    @Test
    void twoTenantsWithTheSameTopicAndGroupSeeOnlyTheirOwn() throws Exception {
        JsonNode alpha = newTenant("java-alpha");
        JsonNode beta = newTenant("java-beta");
        Properties a = sasl(kora.bootstrap(), alpha, "SCRAM-SHA-512");
        Properties b = sasl(kora.bootstrap(), beta, "PLAIN");
        for (Properties auth : List.of(a, b)) {
            try (Admin admin = admin(auth)) {
                admin.createTopics(List.of(new NewTopic("orders", 2, (short) 1))).all().get(30, TimeUnit.SECONDS);
            }
        }
        List<String> alphaValues = List.of("a1", "a2", "a3");
        List<String> betaValues = List.of("b1");
        produce(a, "orders", alphaValues);
        produce(b, "orders", betaValues);
        List<String> gotA = consumeAndCommit(a, "orders", "g", alphaValues.size());
        List<String> gotB = consumeAndCommit(b, "orders", "g", betaValues.size());
        assertEquals(Set.copyOf(alphaValues), Set.copyOf(gotA));
        assertEquals(alphaValues.size(), gotA.size());
        assertEquals(betaValues, gotB);

        for (var c : List.of(Map.entry(a, alpha), Map.entry(b, beta))) {
            Properties auth = c.getKey();
            JsonNode key = c.getValue();
            long expected = key == alpha ? alphaValues.size() : betaValues.size();
            try (Admin admin = admin(auth)) {
                assertEquals(Set.of("orders"), admin.listTopics().names().get(30, TimeUnit.SECONDS));
                assertEquals(key.get("tenant").asText(), admin.describeCluster().clusterId().get(30, TimeUnit.SECONDS));
                assertEquals(expected, committed(admin, "g"), "committed offsets of group g are the tenant's own");
                @SuppressWarnings("deprecation")
                Collection<ConsumerGroupListing> groups = admin.listConsumerGroups().all().get(30, TimeUnit.SECONDS);
                assertEquals(Set.of("g"), groups.stream().map(ConsumerGroupListing::groupId).collect(Collectors.toSet()));
            }
        }
        // The dev tenant sees neither tenant's topic.
        try (Admin admin = admin(sasl(kora.bootstrap(), kora.apiKey(), "SCRAM-SHA-256"))) {
            assertTrue(!admin.listTopics().names().get(30, TimeUnit.SECONDS).contains("orders"));
        }
        JsonNode described = kora.cli("tenant", "describe", "java-alpha");
        assertEquals(1, described.get("topics").asInt(), described.toString());
        assertEquals(2, described.get("partitions").asInt(), described.toString());
    }

    /** A --command-config file with the SASL settings of {@code key}. */
    static Path commandConfig(JsonNode key, String mechanism) throws Exception {
        Path f = Files.createTempFile(kora.get().dir(), "client", ".properties");
        Properties p = sasl(kora.bootstrap(), key, mechanism);
        p.remove(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG);
        try (var w = Files.newBufferedWriter(f)) {
            p.store(w, "SASL login of a tenant's API key");
        }
        return f;
    }

    @Test
    void kafkaTopicsListsAndCreatesTopicsAsATenant() throws Exception {
        JsonNode key = newTenant("java-tools");
        Path config = commandConfig(key, "SCRAM-SHA-512");
        String bs = kora.bootstrap();
        Tools.Result empty = Tools.run(Tools.TOPICS, "--bootstrap-server", bs, "--command-config", config.toString(), "--list").ok();
        assertEquals(List.of(), empty.out().lines().filter(l -> !l.isBlank()).toList(), "a new tenant has no topics: " + empty);
        Tools.run(Tools.TOPICS, "--bootstrap-server", bs, "--command-config", config.toString(), "--create", "--topic", "payments",
                "--partitions", "3", "--replication-factor", "1").ok();
        Tools.Result list = Tools.run(Tools.TOPICS, "--bootstrap-server", bs, "--command-config", config.toString(), "--list").ok();
        assertEquals(List.of("payments"), list.out().lines().filter(l -> !l.isBlank()).toList(), list.toString());
        String d = Tools.run(Tools.TOPICS, "--bootstrap-server", bs, "--command-config", config.toString(), "--describe",
                "--topic", "payments").ok().out();
        assertTrue(d.contains("PartitionCount: 3"), d);
        // Another tenant's topics stay out of this tenant's listing, and vice versa.
        Path dev = commandConfig(kora.apiKey(), "PLAIN");
        String devList = Tools.run(Tools.TOPICS, "--bootstrap-server", bs, "--command-config", dev.toString(), "--list").ok().out();
        assertTrue(devList.lines().noneMatch("payments"::equals), devList);
        // Without SASL on a SASL listener the tool does not get in.
        Tools.Result none = Tools.run(Tools.TOPICS, "--bootstrap-server", bs, "--list", "--command-config",
                commandConfigWithoutSasl().toString());
        assertTrue(none.exit() != 0, none.toString());
    }

    /** A PLAINTEXT client that gives up quickly. */
    static Path commandConfigWithoutSasl() throws Exception {
        Path f = Files.createTempFile(kora.get().dir(), "plaintext", ".properties");
        Files.writeString(f, "default.api.timeout.ms=5000\nrequest.timeout.ms=3000\n");
        return f;
    }

    /** A client metric's value by name in one group (e.g. producer-metrics). */
    static double metric(Map<MetricName, ? extends Metric> metrics, String group, String name) {
        return metrics.entrySet().stream()
                .filter(e -> e.getKey().group().equals(group) && e.getKey().name().equals(name))
                .mapToDouble(e -> ((Number) e.getValue().metricValue()).doubleValue())
                .sum();
    }

    /** KIP-368: sessions last 3 s; the Java producer re-authenticates by itself and never fails a send. */
    @Test
    void aProducerKeepsProducingAcrossReauthentications() throws Exception {
        try (KoraProcess reauth = KoraProcess.devAuth("--set", "connections.max.reauth.ms=3000")) {
            JsonNode key = reauth.apiKey();
            Properties auth = sasl(reauth.bootstrap(), key, "SCRAM-SHA-512");
            String topic = ClientSuite.unique("reauth");
            try (Admin a = admin(auth)) {
                a.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(30, TimeUnit.SECONDS);
            }
            int sent = 0;
            Set<Long> offsets = new HashSet<>();
            try (KafkaProducer<String, String> p = producer(auth)) {
                long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                while (System.nanoTime() < end) {
                    // Each send must succeed: a failure throws out of get() and fails the test.
                    offsets.add(p.send(new ProducerRecord<>(topic, "m-" + sent)).get(10, TimeUnit.SECONDS).offset());
                    sent++;
                    Thread.sleep(100);
                }
                double reauths = metric(p.metrics(), "producer-metrics", "successful-reauthentication-total");
                double failed = metric(p.metrics(), "producer-metrics", "failed-reauthentication-total");
                assertTrue(reauths >= 2, "the producer re-authenticated (" + reauths + " times) within 10 s of 3 s sessions\n"
                        + reauth.tail());
                assertEquals(0.0, failed, "no re-authentication failed\n" + reauth.tail());
            }
            assertTrue(sent > 20, "sent " + sent);
            assertEquals(sent, offsets.size(), "every send got its own offset");
            try (Admin a = admin(auth)) {
                TopicPartition tp = new TopicPartition(topic, 0);
                long end = a.listOffsets(Map.of(tp, org.apache.kafka.clients.admin.OffsetSpec.latest()))
                        .partitionResult(tp).get(30, TimeUnit.SECONDS).offset();
                assertEquals(sent, end, "the log holds every record sent");
            }
        }
    }
}
