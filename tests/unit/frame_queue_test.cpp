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
