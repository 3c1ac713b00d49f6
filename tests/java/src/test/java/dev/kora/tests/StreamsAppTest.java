package dev.kora.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * A real Kafka Streams application against {@code kora dev}: a word count whose
 * {@code groupBy} makes Streams create a repartition topic and whose {@code count()} into a
 * persistent (RocksDB) store makes it create a compacted changelog topic. The application is
 * then restarted with an empty state directory, so it must rebuild its store from the
 * changelog, and the counts must continue from there.
 *
 * <p>processing.guarantee is at_least_once: exactly_once_v2 needs transactions, which Kora does
 * not have yet. Tried against this Kora, the Streams producer's initTransactions gets
 * COORDINATOR_NOT_AVAILABLE for FindCoordinator(key type TRANSACTION), which the Java client
 * retries; after max.block.ms (60 s) Streams logs a TimeoutException "trying to initialize
 * transactions", retries again, and the application stays in REBALANCING.
 */
class StreamsAppTest {
    private static final String STORE = "counts";
    private static final int PARTITIONS = 3;

    @RegisterExtension
    static final KoraExtension kora = KoraExtension.dev();

    private static String unique(String prefix) {
        return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
    }

    private static Topology wordCount(String input, String output) {
        StreamsBuilder b = new StreamsBuilder();
        b.<String, String>stream(input)
                .flatMapValues(line -> Arrays.asList(line.toLowerCase().split("\\s+")))
                .groupBy((key, word) -> word, Grouped.as(STORE))
                .count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as(STORE).withValueSerde(Serdes.Long()))
                .toStream()
                .to(output, Produced.with(Serdes.String(), Serdes.Long()));
        return b.build();
    }

    private static Properties streamsConfig(String appId, Path stateDir) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, kora.bootstrap());
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class.getName());
        p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class.getName());
        // Static membership, as applications that restart instances use: a dynamic Streams
        // member never sends LeaveGroup (Streams turns leave-on-close off), so a restarted
        // instance would wait out the old member's session timeout (45 s) on any broker. With a
        // group.instance.id, close(leaveGroup=true) removes the member through the Admin API
        // (LeaveGroup by instance id) and the next instance joins at once.
        p.put(StreamsConfig.mainConsumerPrefix(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG), appId + "-instance");
        return p;
    }

    /** Counts the words of {@code lines} into {@code counts}. */
    private static void countInto(Map<String, Long> counts, List<String> lines) {
        for (String line : lines) {
            for (String w : line.toLowerCase().split("\\s+")) {
                counts.merge(w, 1L, Long::sum);
            }
        }
    }

    private static void produce(String topic, List<String> lines) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kora.bootstrap());
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            List<java.util.concurrent.Future<?>> sent = new ArrayList<>();
            for (int i = 0; i < lines.size(); i++) {
                sent.add(producer.send(new ProducerRecord<>(topic, "line-" + i, lines.get(i))));
            }
            for (var f : sent) {
                f.get(30, TimeUnit.SECONDS);
            }
        }
    }

    private static void awaitState(KafkaStreams streams, KafkaStreams.State want, AtomicReference<Throwable> error) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (streams.state() != want) {
            if (error.get() != null) {
                throw new AssertionError("stream thread failed before " + want, error.get());
            }
            if (streams.state() == KafkaStreams.State.ERROR || System.nanoTime() > deadline) {
                throw new AssertionError("streams is " + streams.state() + ", not " + want + "\n" + kora.tail());
            }
            Thread.sleep(50);
        }
    }

    /**
     * Reads the output topic into {@code latest} (the newest count of each word) until it
     * equals {@code expected} or 30 s pass.
     */
    private static void awaitCounts(KafkaConsumer<String, Long> out, Map<String, Long> latest, Map<String, Long> expected,
            AtomicReference<Throwable> error) {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!latest.equals(expected) && System.nanoTime() < deadline && error.get() == null) {
            for (ConsumerRecord<String, Long> r : out.poll(Duration.ofMillis(200))) {
                latest.put(r.key(), r.value());
            }
        }
        if (error.get() != null) {
            throw new AssertionError("stream thread failed", error.get());
        }
        assertEquals(new TreeMap<>(expected), new TreeMap<>(latest), "the newest count of each word on the output topic");
    }

    /** Everything in the application's store, through interactive queries. */
    private static Map<String, Long> storeContents(KafkaStreams streams) {
        ReadOnlyKeyValueStore<String, Long> store = streams.store(
                StoreQueryParameters.fromNameAndType(STORE, QueryableStoreTypes.<String, Long>keyValueStore()));
        Map<String, Long> all = new TreeMap<>();
        try (KeyValueIterator<String, Long> it = store.all()) {
            while (it.hasNext()) {
                KeyValue<String, Long> kv = it.next();
                all.put(kv.key, kv.value);
            }
        }
        return all;
    }

    private static void closeAndLeave(KafkaStreams streams) {
        assertTrue(streams.close(new KafkaStreams.CloseOptions().leaveGroup(true).timeout(Duration.ofSeconds(30))),
                "streams closes within 30 s");
        assertEquals(KafkaStreams.State.NOT_RUNNING, streams.state());
    }

    private static KafkaStreams startStreams(Topology topology, Properties config, AtomicReference<Throwable> error,
            StateRestoreListener restore) throws Exception {
        KafkaStreams streams = new KafkaStreams(topology, config);
        streams.setUncaughtExceptionHandler(e -> {
            error.compareAndSet(null, e);
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        if (restore != null) {
            streams.setGlobalStateRestoreListener(restore);
        }
        streams.start();
        try {
            awaitState(streams, KafkaStreams.State.RUNNING, error);
        } catch (Throwable t) {
            streams.close(Duration.ofSeconds(30));
            throw t;
        }
        return streams;
    }

    @Test
    void wordCountCreatesInternalTopicsAndRestoresFromTheChangelog() throws Exception {
        String appId = unique("java-wordcount");
        String input = appId + "-in";
        String output = appId + "-out";
        String repartition = appId + "-" + STORE + "-repartition";
        String changelog = appId + "-" + STORE + "-changelog";
        Properties adminProps = new Properties();
        adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, kora.bootstrap());
        Path state1 = Files.createTempDirectory("kora-streams-state");
        Path state2 = Files.createTempDirectory("kora-streams-state");
        Topology topology = wordCount(input, output);
        AtomicReference<Throwable> error = new AtomicReference<>();

        try (Admin admin = Admin.create(adminProps)) {
            admin.createTopics(List.of(new NewTopic(input, PARTITIONS, (short) 1), new NewTopic(output, PARTITIONS, (short) 1)))
                    .all().get(30, TimeUnit.SECONDS);

            Properties cp = new Properties();
            cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, kora.bootstrap());
            cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, LongDeserializer.class.getName());
            try (KafkaConsumer<String, Long> out = new KafkaConsumer<>(cp)) {
                List<TopicPartition> tps = new ArrayList<>();
                for (int i = 0; i < PARTITIONS; i++) {
                    tps.add(new TopicPartition(output, i));
                }
                out.assign(tps);
                out.seekToBeginning(tps);
                Map<String, Long> latest = new ConcurrentHashMap<>();

                // First run: count the first batch of lines.
                List<String> first = List.of(
                        "the quick brown fox jumps over the lazy dog",
                        "the dog barks",
                        "a fox is quick",
                        "kora speaks the kafka protocol",
                        "kafka streams counts the words",
                        "the end");
                Map<String, Long> expected = new TreeMap<>();
                countInto(expected, first);
                KafkaStreams streams = startStreams(topology, streamsConfig(appId, state1), error, null);
                try {
                    produce(input, first);
                    awaitCounts(out, latest, expected, error);
                    assertEquals(expected, storeContents(streams), "the state store holds the counts");
                    // A clean shutdown that leaves the group, as an operator's restart does.
                    closeAndLeave(streams);
                } finally {
                    streams.close(Duration.ofSeconds(30)); // returns at once when already closed
                }
                ConsumerGroupDescription group = admin.describeConsumerGroups(List.of(appId)).all()
                        .get(30, TimeUnit.SECONDS).get(appId);
                assertEquals(List.of(), List.copyOf(group.members()), "the closed instance left the group");

                // Streams created its internal topics: the repartition topic behind groupBy and the
                // compacted changelog behind the count's store, with the input's partition count.
                Set<String> topics = admin.listTopics().names().get(30, TimeUnit.SECONDS);
                assertTrue(topics.contains(repartition), "repartition topic " + repartition + " in " + topics);
                assertTrue(topics.contains(changelog), "changelog topic " + changelog + " in " + topics);
                Map<String, TopicDescription> described = admin.describeTopics(List.of(repartition, changelog))
                        .allTopicNames().get(30, TimeUnit.SECONDS);
                assertEquals(PARTITIONS, described.get(repartition).partitions().size());
                assertEquals(PARTITIONS, described.get(changelog).partitions().size());
                ConfigResource changelogRes = new ConfigResource(ConfigResource.Type.TOPIC, changelog);
                ConfigResource repartitionRes = new ConfigResource(ConfigResource.Type.TOPIC, repartition);
                Map<ConfigResource, Config> configs = admin.describeConfigs(List.of(changelogRes, repartitionRes))
                        .all().get(30, TimeUnit.SECONDS);
                assertEquals("compact", configs.get(changelogRes).get("cleanup.policy").value(), "the changelog is compacted");
                assertEquals("delete", configs.get(repartitionRes).get("cleanup.policy").value(), "the repartition topic is not");

                // Second run: a new instance with an empty state directory restores the store from
                // the changelog, then counts on from there.
                Map<TopicPartition, Long> restored = new ConcurrentHashMap<>();
                StateRestoreListener listener = new StateRestoreListener() {
                    @Override
                    public void onRestoreStart(TopicPartition tp, String store, long start, long end) {
                    }

                    @Override
                    public void onBatchRestored(TopicPartition tp, String store, long batchEnd, long n) {
                    }

                    @Override
                    public void onRestoreEnd(TopicPartition tp, String store, long total) {
                        if (store.equals(STORE)) {
                            restored.put(tp, total);
                        }
                    }
                };
                List<String> second = List.of(
                        "the fox returns",
                        "kafka and kora",
                        "brand new words appear");
                Map<String, Long> firstCounts = new TreeMap<>(expected);
                int distinctFirst = firstCounts.size();
                countInto(expected, second);
                KafkaStreams again = startStreams(topology, streamsConfig(appId, state2), error, listener);
                try {
                    // Every word of the first run has at least one changelog record (compaction
                    // keeps the newest per word), and all of them are replayed into the new store.
                    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                    while (restored.size() < PARTITIONS && System.nanoTime() < deadline) {
                        Thread.sleep(50);
                    }
                    assertEquals(PARTITIONS, restored.size(), "every changelog partition was restored: " + restored);
                    long replayed = restored.values().stream().mapToLong(Long::longValue).sum();
                    assertTrue(replayed >= distinctFirst,
                            "the store was restored from the changelog (" + distinctFirst + " words): " + restored);
                    assertEquals(firstCounts, storeContents(again), "the restored store holds the first run's counts");
                    produce(input, second);
                    awaitCounts(out, latest, expected, error);
                    assertEquals(expected, storeContents(again), "the restored store counted on");
                    closeAndLeave(again);
                } finally {
                    again.close(Duration.ofSeconds(30));
                }
            }
        } finally {
            KoraProcess.deleteTree(state1);
            KoraProcess.deleteTree(state2);
        }
    }
}
