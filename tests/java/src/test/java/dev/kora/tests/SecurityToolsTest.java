package dev.kora.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import com.fasterxml.jackson.databind.JsonNode;
import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.errors.TopicAuthorizationException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Kafka's own security tools on {@code kora dev --auth}, logged in as the tenant's admin API key
 * through {@code --command-config}: kafka-acls (AclCommand) grants, lists and removes ACLs that
 * a key made with {@code kora apikey create --no-admin} is then held to, and kafka-configs
 * (ConfigCommand) alters topic configs and creates and deletes SCRAM users (KIP-554). Each
 * change is checked by what a real producer, consumer or login can then do.
 */
class SecurityToolsTest {
    @RegisterExtension
    static final KoraExtension kora = KoraExtension.devAuth();

    /** kafka-acls.sh's main class (moved from kafka.admin to the tools module in Kafka 4.0). */
    static final String ACLS = "org.apache.kafka.tools.AclCommand";

    /** A --command-config file: a SASL_PLAINTEXT login as {@code user}. */
    static Path commandConfig(String user, String password, String mechanism) throws Exception {
        Path f = Files.createTempFile(kora.get().dir(), "security-tools", ".properties");
        Properties p = TenantsTest.sasl(kora.bootstrap(), user, password, mechanism);
        p.remove(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG);
        p.put(CommonClientConfigs.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        p.put(CommonClientConfigs.REQUEST_TIMEOUT_MS_CONFIG, "20000");
        try (var w = Files.newBufferedWriter(f)) {
            p.store(w, "SASL login for Kafka's tools");
        }
        return f;
    }

    /** The tenant admin key {@code kora dev --auth} printed, as a --command-config file. */
    static Path adminConfig() throws Exception {
        JsonNode key = kora.apiKey();
        return commandConfig(key.get("key").asText(), key.get("secret").asText(), "SCRAM-SHA-512");
    }

    /** Runs a tool against Kora with {@code config}'s login. */
    static Tools.Result tool(String mainClass, Path config, String... args) throws Exception {
        List<String> all = new ArrayList<>(List.of("--bootstrap-server", kora.bootstrap(), "--command-config", config.toString()));
        all.addAll(List.of(args));
        return Tools.run(mainClass, all.toArray(String[]::new));
    }

    static Properties adminLogin() {
        return TenantsTest.sasl(kora.bootstrap(), kora.apiKey(), "SCRAM-SHA-512");
    }

    static void createTopics(String... topics) throws Exception {
        try (Admin a = TenantsTest.admin(adminLogin())) {
            List<NewTopic> news = new ArrayList<>();
            for (String t : topics) {
                news.add(new NewTopic(t, 1, (short) 1));
            }
            a.createTopics(news).all().get(30, TimeUnit.SECONDS);
        }
    }

    /** Sends {@code values} to {@code topic}; the first failure is thrown (as ExecutionException). */
    static void produce(Properties auth, String topic, List<String> values) throws Exception {
        try (KafkaProducer<String, String> p = TenantsTest.producer(auth)) {
            List<Future<?>> sent = new ArrayList<>();
            for (String v : values) {
                sent.add(p.send(new ProducerRecord<>(topic, v)));
            }
            p.flush();
            for (Future<?> f : sent) {
                f.get(30, TimeUnit.SECONDS);
            }
        }
    }

    /** What producing one record to {@code topic} failed with; fails if it succeeded. */
    static Throwable produceFails(Properties auth, String topic) {
        return produceFails(auth, topic, "refused");
    }

    static Throwable produceFails(Properties auth, String topic, String value) {
        ExecutionException e = assertThrows(ExecutionException.class, () -> produce(auth, topic, List.of(value)),
                "producing to " + topic + " must fail");
        return e.getCause();
    }

    /** Reads {@code n} records of {@code topic} as group {@code group}; poll's errors are thrown. */
    static List<String> consume(Properties auth, String topic, String group, int n) {
        return TenantsTest.consumeAndCommit(auth, topic, group, n);
    }

    /** Polls {@code topic} as group {@code group} until poll throws: what it threw. */
    static Throwable consumeFails(Properties auth, String topic, String group) {
        try (KafkaConsumer<String, String> c = TenantsTest.consumer(auth, group)) {
            c.subscribe(List.of(topic));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (System.nanoTime() < deadline) {
                try {
                    c.poll(Duration.ofMillis(300));
                } catch (RuntimeException e) {
                    return e;
                }
            }
        }
        throw new AssertionError("consuming " + topic + " as " + group + " did not fail in 30 s");
    }

    static String pattern(String type, String name, String patternType) {
        return "ResourcePattern(resourceType=" + type + ", name=" + name + ", patternType=" + patternType + ")";
    }

    static String entry(String principal, String operation, String permission) {
        return "(principal=" + principal + ", host=*, operation=" + operation + ", permissionType=" + permission + ")";
    }

    @Test
    void kafkaAclsGrantsListsDeniesAndRemovesWhatALimitedKeyMayDo() throws Exception {
        JsonNode limited = kora.cli("apikey", "create", "--tenant", "dev", "--no-admin", "--description", "acl-tools");
        assertEquals(false, limited.get("admin").asBoolean(true), limited.toString());
        String principal = "User:" + limited.get("key").asText();
        Properties auth = TenantsTest.sasl(kora.bootstrap(), limited, "SCRAM-SHA-512");
        Path admin = adminConfig();

        String prefix = ClientSuite.unique("acl") + "-";
        String mine = prefix + "orders";
        String other = ClientSuite.unique("elsewhere");
        String group = prefix + "group";
        createTopics(mine, other);

        // No ACLs yet: a non-admin key may do nothing.
        assertInstanceOf(TopicAuthorizationException.class, produceFails(auth, mine));

        Tools.Result add = tool(ACLS, admin, "--add", "--allow-principal", principal, "--operation", "Read",
                "--operation", "Write", "--topic", prefix, "--resource-pattern-type", "prefixed").ok();
        String topicPattern = pattern("TOPIC", prefix, "PREFIXED");
        assertTrue(add.out().contains("Adding ACLs for resource `" + topicPattern + "`"), add.toString());
        assertTrue(add.out().contains(entry(principal, "READ", "ALLOW")) && add.out().contains(entry(principal, "WRITE", "ALLOW")),
                add.toString());
        tool(ACLS, admin, "--add", "--allow-principal", principal, "--operation", "Read", "--group", prefix,
                "--resource-pattern-type", "prefixed").ok();

        // --list of the topic pattern, and of the principal across resources.
        Tools.Result list = tool(ACLS, admin, "--list", "--topic", prefix, "--resource-pattern-type", "prefixed").ok();
        assertTrue(list.out().contains("Current ACLs for resource `" + topicPattern + "`"), list.toString());
        assertTrue(list.out().contains(entry(principal, "READ", "ALLOW")) && list.out().contains(entry(principal, "WRITE", "ALLOW")),
                list.toString());
        assertTrue(!list.out().contains("resourceType=GROUP"), "a topic listing shows no group ACLs: " + list);
        Tools.Result byPrincipal = tool(ACLS, admin, "--list", "--principal", principal).ok();
        assertTrue(byPrincipal.out().contains(topicPattern) && byPrincipal.out().contains(pattern("GROUP", prefix, "PREFIXED")),
                byPrincipal.toString());

        // The limited key may now produce and consume the prefixed topic, and nothing else.
        List<String> values = List.of("v1", "v2", "v3");
        produce(auth, mine, values);
        assertEquals(values, consume(auth, mine, group, values.size()));
        assertInstanceOf(TopicAuthorizationException.class, produceFails(auth, other));
        Throwable read = consumeFails(auth, other, group);
        assertInstanceOf(TopicAuthorizationException.class, read, read.toString());

        // DENY wins over ALLOW: WRITE denied on the literal topic, READ still allowed.
        tool(ACLS, admin, "--add", "--deny-principal", principal, "--operation", "Write", "--topic", mine).ok();
        Tools.Result both = tool(ACLS, admin, "--list", "--principal", principal).ok();
        assertTrue(both.out().contains(pattern("TOPIC", mine, "LITERAL")) && both.out().contains(entry(principal, "WRITE", "DENY")),
                both.toString());
        assertInstanceOf(TopicAuthorizationException.class, produceFails(auth, mine));
        assertEquals(values, consume(auth, mine, prefix + "group-2", values.size()), "READ is still allowed");

        tool(ACLS, admin, "--remove", "--force", "--deny-principal", principal, "--operation", "Write", "--topic", mine).ok();
        Tools.Result afterDeny = tool(ACLS, admin, "--list", "--principal", principal).ok();
        assertTrue(!afterDeny.out().contains("permissionType=DENY") && afterDeny.out().contains(topicPattern), afterDeny.toString());
        produce(auth, mine, List.of("v4"));

        // Removing the prefixed topic ACLs takes the grant away again.
        // (Like Kafka, the tool prints nothing when it removes and no ACL is left on the pattern.)
        tool(ACLS, admin, "--remove", "--force", "--topic", prefix, "--resource-pattern-type", "prefixed").ok();
        Tools.Result gone = tool(ACLS, admin, "--list", "--topic", prefix, "--resource-pattern-type", "prefixed").ok();
        assertTrue(!gone.out().contains(principal), "no ACLs left on " + topicPattern + ": " + gone);
        assertInstanceOf(TopicAuthorizationException.class, produceFails(auth, mine));
        Throwable readAfter = consumeFails(auth, mine, group);
        assertInstanceOf(TopicAuthorizationException.class, readAfter, readAfter.toString());

        // The limited key itself may not manage ACLs (that needs ALTER on the cluster).
        Path limitedConfig = commandConfig(limited.get("key").asText(), limited.get("secret").asText(), "PLAIN");
        Tools.Result refused = tool(ACLS, limitedConfig, "--add", "--allow-principal", principal, "--operation", "All", "--topic", "*");
        assertTrue(refused.exit() != 0 && (refused.out() + refused.err()).contains("ClusterAuthorizationException"), refused.toString());
        tool(ACLS, admin, "--remove", "--force", "--group", prefix, "--resource-pattern-type", "prefixed").ok();
        Tools.Result none = tool(ACLS, admin, "--list", "--principal", principal).ok();
        assertTrue(!none.out().contains("ResourcePattern("), "every ACL of the key removed: " + none);
    }

    @Test
    void kafkaConfigsDescribesAltersAndDeletesATenantsTopicConfig() throws Exception {
        Path admin = adminConfig();
        Properties auth = adminLogin();
        String t = ClientSuite.unique("configs");
        createTopics(t);
        String before = tool(Tools.CONFIGS, admin, "--entity-type", "topics", "--entity-name", t, "--describe").ok().out();
        assertTrue(before.contains("Dynamic configs for topic " + t) && !before.contains("retention.ms=")
                && !before.contains("max.message.bytes="), before);
        String big = "x".repeat(8000);
        produce(auth, t, List.of(big));

        Tools.Result alter = tool(Tools.CONFIGS, admin, "--entity-type", "topics", "--entity-name", t, "--alter",
                "--add-config", "retention.ms=123456789,max.message.bytes=2048").ok();
        assertTrue(alter.out().contains("Completed updating config for topic " + t), alter.toString());
        String after = tool(Tools.CONFIGS, admin, "--entity-type", "topics", "--entity-name", t, "--describe").ok().out();
        assertTrue(after.contains("retention.ms=123456789") && after.contains("max.message.bytes=2048"), after);
        try (Admin a = TenantsTest.admin(auth)) {
            var resource = new ConfigResource(ConfigResource.Type.TOPIC, t);
            var config = a.describeConfigs(List.of(resource)).all().get(30, TimeUnit.SECONDS).get(resource);
            assertEquals("123456789", config.get("retention.ms").value(), "the client sees the tool's change");
        }
        // The log holds to the new limit: an 8000-byte record is refused, a small one is not.
        Throwable tooLarge = produceFails(auth, t, big);
        assertInstanceOf(RecordTooLargeException.class, tooLarge, tooLarge.toString());
        produce(auth, t, List.of("small"));

        tool(Tools.CONFIGS, admin, "--entity-type", "topics", "--entity-name", t, "--alter",
                "--delete-config", "retention.ms,max.message.bytes").ok();
        String deleted = tool(Tools.CONFIGS, admin, "--entity-type", "topics", "--entity-name", t, "--describe").ok().out();
        assertTrue(!deleted.contains("retention.ms=") && !deleted.contains("max.message.bytes="), deleted);
        String all = tool(Tools.CONFIGS, admin, "--entity-type", "topics", "--entity-name", t, "--describe", "--all").ok().out();
        assertTrue(all.contains("retention.ms=604800000"), "back to the default: " + all);
        produce(auth, t, List.of(big));
        assertEquals(List.of(big, "small", big), consume(auth, t, ClientSuite.unique("configs-g"), 3));

        // A value the topic config cannot take: the tool fails and says which.
        Tools.Result bad = tool(Tools.CONFIGS, admin, "--entity-type", "topics", "--entity-name", t, "--alter",
                "--add-config", "retention.ms=soon");
        assertTrue(bad.exit() != 0 && (bad.out() + bad.err()).contains("retention.ms"), bad.toString());
    }

    /** What DescribeUserScramCredentials shows the tenant admin: user -> "MECHANISM=iterations=N, ...". */
    static Map<String, String> scramUsers() throws Exception {
        try (Admin a = TenantsTest.admin(adminLogin())) {
            Map<String, String> users = new TreeMap<>();
            a.describeUserScramCredentials().all().get(30, TimeUnit.SECONDS).forEach((user, d) -> users.put(user,
                    d.credentialInfos().stream().map(i -> i.mechanism().mechanismName() + "=iterations=" + i.iterations())
                            .sorted().collect(Collectors.joining(", "))));
            return users;
        }
    }

    @Test
    void kafkaConfigsCreatesAndDeletesScramUsers() throws Exception {
        Path admin = adminConfig();
        String tenant = kora.apiKey().get("tenant").asText();
        String user = ClientSuite.unique("bob");
        String login = tenant + "~" + user;
        String password = "secret-" + ClientSuite.unique("p");

        Tools.Result add = tool(Tools.CONFIGS, admin, "--entity-type", "users", "--entity-name", user, "--alter",
                "--add-config", "SCRAM-SHA-512=[iterations=8192,password=" + password + "]").ok();
        assertTrue(add.out().contains("Completed updating config for user " + user + "."), add.toString());
        // What kafka-configs --describe --entity-type users would print from (see the disabled test below).
        assertEquals("SCRAM-SHA-512=iterations=8192", scramUsers().get(user), scramUsers().toString());

        // The user logs in with SCRAM-SHA-512 (as <tenant id>~user) and is in the tenant's cluster.
        Properties auth = TenantsTest.sasl(kora.bootstrap(), login, password, "SCRAM-SHA-512");
        try (Admin a = TenantsTest.admin(auth)) {
            assertEquals(tenant, a.describeCluster().clusterId().get(30, TimeUnit.SECONDS));
        }
        // A wrong password, or a mechanism the user has no credential for, does not get in.
        assertLoginFails(TenantsTest.sasl(kora.bootstrap(), login, "not-" + password, "SCRAM-SHA-512"));
        assertLoginFails(TenantsTest.sasl(kora.bootstrap(), login, password, "SCRAM-SHA-256"));

        Tools.Result delete = tool(Tools.CONFIGS, admin, "--entity-type", "users", "--entity-name", user, "--alter",
                "--delete-config", "SCRAM-SHA-512").ok();
        assertTrue(delete.out().contains("Completed updating config for user " + user + "."), delete.toString());
        assertTrue(!scramUsers().containsKey(user), scramUsers().toString());
        assertLoginFails(auth);

        // Deleting it again: Kafka's RESOURCE_NOT_FOUND, and the tool fails.
        Tools.Result again = tool(Tools.CONFIGS, admin, "--entity-type", "users", "--entity-name", user, "--alter",
                "--delete-config", "SCRAM-SHA-512");
        assertTrue(again.exit() != 0 && (again.out() + again.err()).contains("ResourceNotFoundException"), again.toString());
    }

    /**
     * A user named like one of the tenant's API keys would be {@code User:<key id>} in the
     * tenant's ACLs too, and hold the key's grants: kafka-configs is refused, and no such login
     * exists afterwards.
     */
    @Test
    void kafkaConfigsRefusesAScramUserNamedLikeAnApiKey() throws Exception {
        Path admin = adminConfig();
        String tenant = kora.apiKey().get("tenant").asText();
        JsonNode key = kora.cli("apikey", "create", "--tenant", "dev", "--no-admin", "--description", "not-a-user");
        String name = key.get("key").asText();
        Tools.Result add = tool(Tools.CONFIGS, admin, "--entity-type", "users", "--entity-name", name, "--alter",
                "--add-config", "SCRAM-SHA-512=[password=taken]");
        assertTrue(add.exit() != 0 && (add.out() + add.err()).contains("UnacceptableCredentialException")
                && (add.out() + add.err()).contains("this name belongs to an API key"), add.toString());
        assertTrue(!scramUsers().containsKey(name), scramUsers().toString());
        assertLoginFails(TenantsTest.sasl(kora.bootstrap(), tenant + "~" + name, "taken", "SCRAM-SHA-512"));
        // The key itself still logs in.
        try (Admin a = TenantsTest.admin(TenantsTest.sasl(kora.bootstrap(), key, "SCRAM-SHA-512"))) {
            assertEquals(tenant, a.describeCluster().clusterId().get(30, TimeUnit.SECONDS));
        }
    }

    /**
     * kafka-configs --describe --entity-type users asks for the users' client quotas
     * (DescribeClientQuotas: Kora's quotas are the tenant's, so none) before their SCRAM
     * credentials (DescribeUserScramCredentials).
     */
    @Test
    void kafkaConfigsDescribesScramUsers() throws Exception {
        Path admin = adminConfig();
        String user = ClientSuite.unique("carol");
        tool(Tools.CONFIGS, admin, "--entity-type", "users", "--entity-name", user, "--alter",
                "--add-config", "SCRAM-SHA-512=[iterations=8192,password=carol-secret],SCRAM-SHA-256=[password=carol-secret]").ok();
        String line = "SCRAM credential configs for user-principal '" + user + "' are ";
        Tools.Result all = tool(Tools.CONFIGS, admin, "--entity-type", "users", "--describe").ok();
        assertTrue(all.out().contains(line), all.toString());
        assertTrue(all.out().contains("SCRAM-SHA-512=iterations=8192") && all.out().contains("SCRAM-SHA-256=iterations=4096"),
                all.toString());
        Tools.Result one = tool(Tools.CONFIGS, admin, "--entity-type", "users", "--entity-name", user, "--describe").ok();
        assertTrue(one.out().contains(line), one.toString());
        tool(Tools.CONFIGS, admin, "--entity-type", "users", "--entity-name", user, "--alter",
                "--delete-config", "SCRAM-SHA-512,SCRAM-SHA-256").ok();
        Tools.Result gone = tool(Tools.CONFIGS, admin, "--entity-type", "users", "--describe").ok();
        assertTrue(!gone.out().contains("'" + user + "'"), gone.toString());
    }

    static void assertLoginFails(Properties auth) {
        try (Admin a = TenantsTest.admin(auth)) {
            ExecutionException e = assertThrows(ExecutionException.class,
                    () -> a.describeCluster().clusterId().get(60, TimeUnit.SECONDS));
            assertInstanceOf(SaslAuthenticationException.class, e.getCause(), e.toString());
        }
    }
}
