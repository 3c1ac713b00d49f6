package dev.kora.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.errors.ClusterAuthorizationException;
import org.apache.kafka.common.errors.ThrottlingQuotaExceededException;
import org.apache.kafka.common.quota.ClientQuotaAlteration;
import org.apache.kafka.common.quota.ClientQuotaEntity;
import org.apache.kafka.common.quota.ClientQuotaFilter;
import org.apache.kafka.common.quota.ClientQuotaFilterComponent;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Tenants' quotas seen through the Java AdminClient on {@code kora dev --auth}: a tenant reads
 * its own quotas with DescribeClientQuotas (KIP-546) and never another tenant's, cannot raise
 * them with AlterClientQuotas, and is held to its controller_mutation_rate (KIP-599) when it
 * creates topics: THROTTLING_QUOTA_EXCEEDED with a throttle time, which the AdminClient waits
 * out by itself unless told not to retry.
 */
class QuotasTest {
    @RegisterExtension
    static final KoraExtension kora = KoraExtension.devAuth();

    /** A new tenant: its id and admin key. */
    static JsonNode tenant(String name) throws Exception {
        return kora.get().cli("tenant", "create", ClientSuite.unique(name));
    }

    static Admin adminOf(JsonNode created) {
        return TenantsTest.admin(TenantsTest.sasl(kora.bootstrap(), created.get("api_key"), "PLAIN"));
    }

    @Test
    void aTenantDescribesItsOwnQuotasAndCannotRaiseThem() throws Exception {
        JsonNode mine = tenant("quota-mine");
        JsonNode other = tenant("quota-other");
        String id = mine.get("tenant").get("id").asText();
        kora.get().cli("tenant", "quota", "set", id, "--producer-byte-rate", "1MiB", "--max-connections", "40");
        kora.get().cli("tenant", "quota", "set", other.get("tenant").get("id").asText(), "--consumer-byte-rate", "5MB");
        try (Admin a = adminOf(mine)) {
            Map<ClientQuotaEntity, Map<String, Double>> seen =
                    a.describeClientQuotas(ClientQuotaFilter.all()).entities().get(30, TimeUnit.SECONDS);
            ClientQuotaEntity entity = new ClientQuotaEntity(Map.of("tenant", id));
            assertEquals(Map.of(entity, Map.of("producer_byte_rate", 1048576.0, "max_connections", 40.0)), seen);
            var exact = ClientQuotaFilter.containsOnly(List.of(ClientQuotaFilterComponent.ofEntity("tenant", id)));
            assertEquals(seen, a.describeClientQuotas(exact).entities().get(30, TimeUnit.SECONDS));
            // Kafka's own entity types hold nothing in Kora.
            var users = ClientQuotaFilter.contains(List.of(ClientQuotaFilterComponent.ofEntityType("user")));
            assertTrue(a.describeClientQuotas(users).entities().get(30, TimeUnit.SECONDS).isEmpty());
            var raise = new ClientQuotaAlteration(entity, List.of(new ClientQuotaAlteration.Op("producer_byte_rate", 1e12)));
            ExecutionException e = assertThrows(ExecutionException.class,
                    () -> a.alterClientQuotas(List.of(raise)).all().get(30, TimeUnit.SECONDS));
            assertInstanceOf(ClusterAuthorizationException.class, e.getCause(), e.toString());
        }
        JsonNode shown = kora.get().cli("tenant", "quota", "show", id);
        assertEquals(1048576.0, shown.get("quotas").get("producer_byte_rate").asDouble());
    }

    @Test
    void topicCreationIsHeldToTheControllerMutationRate() throws Exception {
        JsonNode t = tenant("quota-mutations");
        String id = t.get("tenant").get("id").asText();
        // 2 partitions a second, a burst of 22 (11 windows of a second).
        kora.get().cli("tenant", "quota", "set", id, "--controller-mutation-rate", "2");
        // Two clients: the one that took the tokens is told the throttle time and waits it out
        // before its next request (KIP-219), so the refusal is seen by another connection.
        try (Admin a = adminOf(t); Admin b = adminOf(t)) {
            b.listTopics().names().get(30, TimeUnit.SECONDS);
            // Within the burst's tokens: taken, leaving the bucket 8 in debt (4 s at 2 a second).
            a.createTopics(List.of(new NewTopic("wide", 30, (short) 1))).all().get(30, TimeUnit.SECONDS);
            var noRetry = new CreateTopicsOptions().retryOnQuotaViolation(false);
            ExecutionException e = assertThrows(ExecutionException.class,
                    () -> b.createTopics(List.of(new NewTopic("next", 1, (short) 1)), noRetry).all().get(30, TimeUnit.SECONDS));
            ThrottlingQuotaExceededException q = assertInstanceOf(ThrottlingQuotaExceededException.class, e.getCause(), e.toString());
            assertTrue(q.throttleTimeMs() > 1000 && q.throttleTimeMs() <= 4000, "throttle " + q.throttleTimeMs());
            // The AdminClient's default waits the throttle out and retries: it gets there.
            b.createTopics(List.of(new NewTopic("next", 1, (short) 1))).all().get(30, TimeUnit.SECONDS);
            assertTrue(a.listTopics().names().get(30, TimeUnit.SECONDS).containsAll(List.of("wide", "next")));
        }
    }
}
