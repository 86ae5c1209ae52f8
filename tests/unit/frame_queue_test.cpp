// The outbound queue's byte bound and slow-consumer policies.
#include <gtest/gtest.h>

#include "framecast/io/frame_queue.hpp"

namespace {

using framecast::io::frame_queue;
using framecast::io::shared_frame;
using framecast::io::slow_consumer_policy;

shared_frame f(std::size_t n, char c = 'x') { return std::make_shared<const std::string>(n, c); }

TEST(FrameQueue, QueuesWithinTheBound) {
    frame_queue q(100, slow_consumer_policy::disconnect);
    EXPECT_TRUE(q.push(f(60)).queued);
    EXPECT_TRUE(q.push(f(40)).queued);  // exactly at the limit
    EXPECT_EQ(q.bytes(), 100u);
    EXPECT_EQ(q.size(), 2u);
}

TEST(FrameQueue, DisconnectPolicyReportsOverflowAndLeavesTheQueue) {
    frame_queue q(100, slow_consumer_policy::disconnect);
    q.push(f(60));
    auto r = q.push(f(41));
    EXPECT_FALSE(r.queued);
    EXPECT_TRUE(r.overflow);
    EXPECT_EQ(q.bytes(), 60u);
    EXPECT_EQ(q.size(), 1u);
}

TEST(FrameQueue, SharesTheFrameInsteadOfCopying) {
    frame_queue a(100, slow_consumer_policy::disconnect), b(100, slow_consumer_policy::disconnect);
    auto frame = f(10);
    a.push(frame);
    b.push(frame);
    EXPECT_EQ(a[0].get(), b[0].get());
    EXPECT_EQ(frame.use_count(), 3);
}

TEST(FrameQueue, DropOldestDropsWholeFramesFromTheFront) {
    frame_queue q(100, slow_consumer_policy::drop_oldest);
    q.push(f(40, 'a'));
    q.push(f(40, 'b'));
    auto r = q.push(f(40, 'c'));
    EXPECT_TRUE(r.queued);
    EXPECT_FALSE(r.overflow);
    EXPECT_EQ(r.dropped_frames, 1u);
    EXPECT_EQ(r.dropped_bytes, 40u);
    ASSERT_EQ(q.size(), 2u);
    EXPECT_EQ((*q[0])[0], 'b');
    EXPECT_EQ((*q[1])[0], 'c');
    EXPECT_EQ(q.bytes(), 80u);
}

TEST(FrameQueue, DropOldestNeverDropsAFrameBeingWritten) {
    frame_queue q(100, slow_consumer_policy::drop_oldest);
    q.push(f(50, 'a'));
    q.push(f(30, 'b'));
    EXPECT_EQ(q.consume(1), 0u);  // 'a' is on its way to the socket
    auto r = q.push(f(40, 'c'));  // must drop 'b', not 'a'
    EXPECT_TRUE(r.queued);
    EXPECT_EQ(r.dropped_frames, 1u);
    ASSERT_EQ(q.size(), 2u);
    EXPECT_EQ((*q[0])[0], 'a');
    EXPECT_EQ((*q[1])[0], 'c');
    EXPECT_EQ(q.consume(49), 1u);
    ASSERT_EQ(q.size(), 1u);
    EXPECT_EQ((*q[0])[0], 'c');
    EXPECT_EQ(q.bytes(), 40u);
}

TEST(FrameQueue, DropOldestDropsTheNewFrameWhenOnlyPinnedFramesRemain) {
    frame_queue q(100, slow_consumer_policy::drop_oldest);
    q.push(f(90, 'a'));
    q.consume(1);
    auto r = q.push(f(20, 'b'));
    EXPECT_FALSE(r.queued);
    EXPECT_EQ(r.dropped_frames, 1u);
    EXPECT_EQ(r.dropped_bytes, 20u);
    EXPECT_EQ(q.size(), 1u);
    EXPECT_EQ(q.in_flight(), 1u);
}

TEST(FrameQueue, AUnitOfSeveralMessagesIsCountedAsThemAll) {
    frame_queue q(100, slow_consumer_policy::drop_oldest);
    q.push(f(40, 'a'), 4);  // e.g. a publisher's read: four frames in one shared buffer
    q.push(f(40, 'b'), 3);
    auto r = q.push(f(40, 'c'), 2);  // over the bound: the oldest unit goes, all four of it
    EXPECT_TRUE(r.queued);
    EXPECT_EQ(r.dropped_frames, 4u);
    EXPECT_EQ(r.dropped_bytes, 40u);
    EXPECT_EQ(q.consume(50), 3u);  // b whole, 10 bytes of c
    EXPECT_EQ(q.consume(30), 2u);
    EXPECT_TRUE(q.empty());
}

TEST(FrameQueue, ConsumeRemovesWholeFramesAndPinsAPartlyWrittenOne) {
    frame_queue q(1000, slow_consumer_policy::drop_oldest);
    q.push(f(10, 'a'));
    q.push(f(20, 'b'));
    q.push(f(30, 'c'));
    EXPECT_EQ(q.consume(15), 1u);  // all of a, 5 bytes of b
    EXPECT_EQ(q.front_offset(), 5u);
    EXPECT_EQ(q.in_flight(), 1u);
    EXPECT_EQ(q.size(), 2u);
    EXPECT_EQ(q.bytes(), 50u);
    EXPECT_EQ(q.consume(14), 0u);  // b still one byte short
    EXPECT_EQ(q.front_offset(), 19u);
    EXPECT_EQ(q.consume(1), 1u);  // exactly the end of b
    EXPECT_EQ(q.front_offset(), 0u);
    EXPECT_EQ(q.in_flight(), 0u);
    EXPECT_EQ(q.consume(30), 1u);
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(q.bytes(), 0u);
    EXPECT_EQ(q.consume(0), 0u);
}

TEST(FrameQueue, DropOldestNeverDropsAPartlyConsumedFrame) {
    frame_queue q(100, slow_consumer_policy::drop_oldest);
    q.push(f(50, 'a'));
    q.push(f(50, 'b'));
    q.consume(10);  // the peer has 10 bytes of a
    auto r = q.push(f(50, 'c'));
    EXPECT_TRUE(r.queued);
    EXPECT_EQ(r.dropped_frames, 1u);  // b, not a
    EXPECT_EQ((*q[0])[0], 'a');
    EXPECT_EQ((*q[1])[0], 'c');
    EXPECT_EQ(q.front_offset(), 10u);
}

}  // namespace

// The queue's storage: a ring that allocates on the first push and keeps FIFO order across
// wrap-around, growth and erase.
namespace ring_tests {

using framecast::io::ring;

TEST(Ring, AllocatesNothingUntilTheFirstPush) {
    ring<int> r;
    EXPECT_EQ(r.capacity(), 0u);
    EXPECT_TRUE(r.empty());
    r.push_back(1);
    EXPECT_EQ(r.capacity(), 4u);
}

TEST(Ring, KeepsOrderWhenItGrowsWhileWrappedAround) {
    ring<int> r;
    int next_in = 0, next_out = 0;
    // Push 3, pop 2, repeatedly: the head walks around the array and the ring grows mid-way.
    for (int round = 0; round < 50; ++round) {
        for (int i = 0; i < 3; ++i) r.push_back(next_in++);
        for (int i = 0; i < 2; ++i) {
            ASSERT_EQ(r.front(), next_out++);
            r.pop_front();
        }
    }
    ASSERT_EQ(r.size(), static_cast<std::size_t>(next_in - next_out));
    for (std::size_t i = 0; i < r.size(); ++i) EXPECT_EQ(r[i], next_out + static_cast<int>(i));
}

TEST(Ring, EraseKeepsTheOrderOfTheOthers) {
    ring<int> r;
    for (int i = 0; i < 6; ++i) r.push_back(i);  // grows to 8 with the head at 0
    r.pop_front();
    r.pop_front();
    r.push_back(6);
    r.push_back(7);
    r.push_back(8);  // wraps: [2 3 4 5 6 7 8]
    r.erase(1);      // drops 3
    ASSERT_EQ(r.size(), 6u);
    const int want[] = {2, 4, 5, 6, 7, 8};
    for (std::size_t i = 0; i < 6; ++i) EXPECT_EQ(r[i], want[i]);
    r.erase(0);
    EXPECT_EQ(r.front(), 4);
}

TEST(Ring, PopReleasesTheElementAtOnce) {
    ring<shared_frame> r;
    auto frame = f(10);
    r.push_back(frame);
    EXPECT_EQ(frame.use_count(), 2);
    r.pop_front();
    EXPECT_EQ(frame.use_count(), 1);
}

}  // namespace ring_tests
